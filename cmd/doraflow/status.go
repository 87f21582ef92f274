package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/events"
)

var statusCommand = command{name: "doraflow status", args: "",
	about: `Shows each doraflow stream (messages, bytes, first and last message time, replicas), each durable
consumer (pending, ack pending, redelivered, waiting, last active) and the dead letters per service.
It reads NATS only and changes nothing.`,
	examples: []string{
		"doraflow status                                # the pipeline of doraflow local/demo, or NATS_URL",
		"NATS_URL=nats://nats.doraflow:4222 doraflow status",
	}}

// status prints every doraflow stream, its consumers and the dead-letter depth per service.
func status(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	fs := statusCommand.flags()
	if err := statusCommand.parse(fs, args, out, 0); err != nil {
		return err
	}
	return p.withNATS(ctx, func(_ *nats.Conn, js jetstream.JetStream) error { return printStatus(ctx, js, out) })
}

func printStatus(ctx context.Context, js jetstream.JetStream, out io.Writer) error {
	names := []string{events.StreamRaw, events.StreamEnriched, events.StreamDeadLetter}
	tw := table(out)
	fmt.Fprintln(tw, "STREAM\tMESSAGES\tBYTES\tFIRST\tLAST\tREPLICAS")
	var streams []jetstream.Stream
	for _, name := range names {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			fmt.Fprintf(tw, "%s\t(missing: no service has started yet)\t\t\t\t\n", name)
			continue
		}
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		info, err := s.Info(ctx, jetstream.WithSubjectFilter(">"))
		if err != nil {
			return fmt.Errorf("stream %s: %w", name, err)
		}
		st := info.State
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\n", name, st.Msgs, st.Bytes, stamp(st.FirstTime), stamp(st.LastTime), info.Config.Replicas)
		streams = append(streams, s)
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintln(out)
	tw = table(out)
	fmt.Fprintln(tw, "CONSUMER\tSTREAM\tPENDING\tACK PENDING\tREDELIVERED\tWAITING\tLAST ACTIVE")
	for _, s := range streams {
		lister := s.ListConsumers(ctx)
		var infos []*jetstream.ConsumerInfo
		for ci := range lister.Info() {
			if ci.Config.Durable != "" {
				infos = append(infos, ci)
			}
		}
		if err := lister.Err(); err != nil {
			return fmt.Errorf("consumers of %s: %w", s.CachedInfo().Config.Name, err)
		}
		sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
		for _, ci := range infos {
			last := "-"
			if ci.Delivered.Last != nil {
				last = stamp(*ci.Delivered.Last)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%s\n", ci.Name, ci.Stream, ci.NumPending, ci.NumAckPending,
				ci.NumRedelivered, ci.NumWaiting, last)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	depth, err := deadLetterDepth(ctx, js)
	if err != nil {
		return err
	}
	fmt.Fprintln(out)
	if len(depth) == 0 {
		fmt.Fprintln(out, "Dead letters: none")
		return nil
	}
	tw = table(out)
	fmt.Fprintln(tw, "DEAD LETTERS\tMESSAGES")
	services := make([]string, 0, len(depth))
	for s := range depth {
		services = append(services, s)
	}
	sort.Strings(services)
	for _, s := range services {
		fmt.Fprintf(tw, "%s\t%d\n", s, depth[s])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(out, "\nList them with `doraflow dlq list`, replay with `doraflow dlq replay`.")
	return nil
}

// deadLetterDepth counts dead letters per service, from the stream's per-subject state.
func deadLetterDepth(ctx context.Context, js jetstream.JetStream) (map[string]uint64, error) {
	s, err := js.Stream(ctx, events.StreamDeadLetter)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(events.SubjectDeadLetterPrefix+">"))
	if err != nil {
		return nil, err
	}
	depth := map[string]uint64{}
	for subject, n := range info.State.Subjects {
		depth[strings.TrimPrefix(subject, events.SubjectDeadLetterPrefix)] += n
	}
	return depth, nil
}
