package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/doraflow/doraflow/pkg/events"
)

// deadLetter is one message in DORAFLOW_DLQ.
type deadLetter struct {
	Seq        uint64    `json:"seq"`
	Service    string    `json:"service"`
	Handler    string    `json:"handler"`
	Subject    string    `json:"subject"` // where it was consumed from, and where a replay goes
	EventID    string    `json:"event_id"`
	Deliveries int       `json:"deliveries"` // delivery attempts before it was dead-lettered
	Reason     string    `json:"reason"`
	DeadAt     time.Time `json:"dead_at"`
	Body       []byte    `json:"-"`
	header     nats.Header
}

const dlqUsage = `Usage: doraflow dlq list|replay [flags]

Dead letters are messages a handler gave up on (a permanent error, or the last delivery attempt
failed); each service has its subject doraflow.dlq.<service> in the stream DORAFLOW_DLQ.

  doraflow dlq list      the dead letters, oldest first, with the reason
  doraflow dlq replay    republish them to their original subjects (after fixing the cause)

Examples:
  doraflow dlq list --service devlake-sink
  doraflow dlq replay --seq 12,13 --dry-run
  doraflow dlq replay --all --service devlake-sink

Run "doraflow dlq list --help" or "doraflow dlq replay --help" for their flags.
`

func dlq(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(out, dlqUsage)
		return errors.New("dlq needs a subcommand: list or replay")
	}
	switch args[0] {
	case "-h", "--help", "-help", "help":
		fmt.Fprint(out, dlqUsage)
		return nil
	case "list":
		return dlqList(ctx, args[1:], p, out)
	case "replay":
		return dlqReplay(ctx, args[1:], p, out)
	default:
		return fmt.Errorf("unknown dlq subcommand %q (want list or replay; see doraflow dlq --help)", args[0])
	}
}

type selection struct {
	service string
	seqs    seqList
	limit   int
}

func (s *selection) register(fs *flag.FlagSet) {
	fs.StringVar(&s.service, "service", "", "only dead letters of this `service`: "+strings.Join(knownServices(), ", "))
	fs.Var(&s.seqs, "seq", "only these DLQ stream `sequences` (comma-separated, repeatable; the SEQ column of dlq list)")
	fs.IntVar(&s.limit, "limit", 0, "at most this `many`, oldest first (default: no limit)")
}

// check rejects a selection that can only match nothing, before anything connects.
func (s selection) check() error {
	if s.service != "" && !slices.Contains(services, s.service) {
		return fmt.Errorf("unknown service %q for --service (known: %s)", s.service, strings.Join(knownServices(), ", "))
	}
	if s.limit < 0 {
		return fmt.Errorf("--limit %d: must not be negative", s.limit)
	}
	return nil
}

var dlqListCommand = command{name: "doraflow dlq list", args: "[flags]",
	about: `Lists dead letters, oldest first: stream sequence, when, the handler, the subject it was consumed
from, the event ID, the delivery attempts and the reason. --json prints a JSON array with each
message's body ([] when there are none).`,
	examples: []string{
		"doraflow dlq list",
		"doraflow dlq list --service devlake-sink --limit 20",
		"doraflow dlq list --json | jq '.[].reason'",
	}}

func dlqList(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	fs := dlqListCommand.flags()
	var sel selection
	sel.register(fs)
	asJSON := fs.Bool("json", false, "print a JSON array (with each body) instead of a table")
	if err := dlqListCommand.parse(fs, args, out, 0); err != nil {
		return err
	}
	if err := sel.check(); err != nil {
		return err
	}
	return p.withNATS(ctx, func(_ *nats.Conn, js jetstream.JetStream) error {
		letters, err := readDeadLetters(ctx, js, sel)
		if err != nil {
			return err
		}
		if *asJSON {
			type withBody struct {
				deadLetter
				Body json.RawMessage `json:"body"`
			}
			list := make([]withBody, 0, len(letters))
			for _, d := range letters {
				list = append(list, withBody{d, rawJSON(d.Body)})
			}
			enc := json.NewEncoder(out)
			enc.SetIndent("", "  ")
			return enc.Encode(list)
		}
		if len(letters) == 0 {
			fmt.Fprintln(out, "No dead letters.")
			return nil
		}
		tw := table(out)
		fmt.Fprintln(tw, "SEQ\tDEAD AT\tHANDLER\tSUBJECT\tEVENT ID\tDELIVERIES\tREASON")
		for _, d := range letters {
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", d.Seq, stamp(d.DeadAt), d.Handler, d.Subject, d.EventID,
				d.Deliveries, oneLine(d.Reason, 120))
		}
		return tw.Flush()
	})
}

var dlqReplayCommand = command{name: "doraflow dlq replay", args: "(--all | --seq N,…) [flags]",
	about: `Republishes each selected dead letter to its original subject with its original headers, then
removes it from the DLQ (--keep leaves it). The event ID (ce-id) is kept, so handlers that already
processed the event skip it. Fix the cause first: a message that fails the same way is dead-lettered
again.`,
	examples: []string{
		"doraflow dlq replay --seq 12 --dry-run",
		"doraflow dlq replay --all --service devlake-sink",
		"doraflow dlq replay --all --keep",
	}}

func dlqReplay(ctx context.Context, args []string, p pipeline, out io.Writer) error {
	fs := dlqReplayCommand.flags()
	var sel selection
	sel.register(fs)
	all := fs.Bool("all", false, "replay every selected dead letter (required without --seq)")
	keep := fs.Bool("keep", false, "keep replayed messages in the DLQ (default: delete them once republished)")
	dryRun := fs.Bool("dry-run", false, "say what would be replayed, change nothing")
	if err := dlqReplayCommand.parse(fs, args, out, 0); err != nil {
		return err
	}
	if err := sel.check(); err != nil {
		return err
	}
	if len(sel.seqs) == 0 && !*all {
		return errors.New("name the dead letters with --seq, or pass --all (optionally with --service)")
	}
	return p.withNATS(ctx, func(_ *nats.Conn, js jetstream.JetStream) error {
		letters, err := readDeadLetters(ctx, js, sel)
		if err != nil {
			return err
		}
		stream, err := js.Stream(ctx, events.StreamDeadLetter)
		if err != nil {
			return err
		}
		var replayed int
		var problems []error
		for _, d := range letters {
			if !strings.HasPrefix(d.Subject, "doraflow.") || strings.HasPrefix(d.Subject, events.SubjectDeadLetterPrefix) {
				problems = append(problems, fmt.Errorf("seq %d: original subject %q is not a doraflow event subject; not replayed", d.Seq, d.Subject))
				continue
			}
			if *dryRun {
				fmt.Fprintf(out, "would replay seq %d (%s) to %s\n", d.Seq, d.EventID, d.Subject)
				continue
			}
			if err := replay(ctx, js, d); err != nil {
				problems = append(problems, fmt.Errorf("seq %d: %w", d.Seq, err))
				continue
			}
			if !*keep {
				if err := stream.DeleteMsg(ctx, d.Seq); err != nil {
					problems = append(problems, fmt.Errorf("seq %d was replayed but not removed from the DLQ: %w", d.Seq, err))
				}
			}
			replayed++
			fmt.Fprintf(out, "replayed seq %d (%s) to %s\n", d.Seq, d.EventID, d.Subject)
		}
		if !*dryRun {
			fmt.Fprintf(out, "%d of %d dead letters replayed\n", replayed, len(letters))
		}
		return errors.Join(problems...)
	})
}

// replay republishes a dead letter's body to its original subject with its original headers. The
// Nats-Msg-Id gets a replay suffix, because the original ID may still be inside the stream's
// duplicate window; the event ID (ce-id) is unchanged, so idempotent handlers still recognise an
// event they already processed.
//
// A dead letter whose body was too large to travel with it names the object that keeps the body
// (doraflow-dead-body); the replay publishes that body.
func replay(ctx context.Context, js jetstream.JetStream, d deadLetter) error {
	m := nats.NewMsg(d.Subject)
	m.Data = d.Body
	if ref := d.header.Get(events.HeaderDeadBody); ref != "" {
		bucket, name, _ := strings.Cut(ref, "/")
		obs, err := js.ObjectStore(ctx, bucket)
		if err != nil {
			return fmt.Errorf("dead letter %d keeps its body in %s: %w", d.Seq, ref, err)
		}
		if m.Data, err = obs.GetBytes(ctx, name); err != nil {
			return fmt.Errorf("dead letter %d keeps its body in %s: %w", d.Seq, ref, err)
		}
	}
	for k, v := range d.header {
		if strings.HasPrefix(strings.ToLower(k), "doraflow-dead-") || k == nats.MsgIdHdr {
			continue
		}
		m.Header[k] = v
	}
	id := d.EventID
	if id == "" {
		id = "dlq"
	}
	m.Header.Set(nats.MsgIdHdr, id+"-replay-"+strconv.FormatUint(d.Seq, 10))
	_, err := js.PublishMsg(ctx, m)
	return err
}

// readDeadLetters reads the DLQ stream oldest first and returns the selected messages.
func readDeadLetters(ctx context.Context, js jetstream.JetStream, sel selection) ([]deadLetter, error) {
	s, err := js.Stream(ctx, events.StreamDeadLetter)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []deadLetter
	wanted := map[uint64]bool{}
	for _, n := range sel.seqs {
		wanted[n] = true
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		if len(wanted) > 0 && !wanted[seq] {
			continue
		}
		raw, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // deleted (already replayed)
		}
		if err != nil {
			return nil, fmt.Errorf("read DLQ seq %d: %w", seq, err)
		}
		service := strings.TrimPrefix(raw.Subject, events.SubjectDeadLetterPrefix)
		if sel.service != "" && service != sel.service {
			continue
		}
		d := deadLetter{Seq: seq, Service: service, Handler: raw.Header.Get(events.HeaderDeadHandler),
			Subject: raw.Header.Get(events.HeaderDeadSubject), EventID: raw.Header.Get(events.HeaderID),
			Reason: raw.Header.Get(events.HeaderDeadReason),
			Body:   raw.Data, header: raw.Header}
		d.Deliveries, _ = strconv.Atoi(raw.Header.Get(events.HeaderDeadDeliveries))
		if d.EventID == "" {
			d.EventID = raw.Header.Get(nats.MsgIdHdr)
		}
		d.DeadAt, _ = time.Parse(time.RFC3339Nano, raw.Header.Get(events.HeaderDeadAt))
		out = append(out, d)
		if sel.limit > 0 && len(out) >= sel.limit {
			break
		}
	}
	for n := range wanted {
		found := false
		for _, d := range out {
			found = found || d.Seq == n
		}
		if !found {
			return out, fmt.Errorf("no dead letter with seq %d (see doraflow dlq list)", n)
		}
	}
	return out, nil
}

// seqList is a repeatable, comma-separated list of sequences.
type seqList []uint64

func (s *seqList) String() string {
	parts := make([]string, len(*s))
	for i, n := range *s {
		parts[i] = strconv.FormatUint(n, 10)
	}
	return strings.Join(parts, ",")
}

func (s *seqList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		n, err := strconv.ParseUint(strings.TrimSpace(p), 10, 64)
		if err != nil || n == 0 {
			return fmt.Errorf("%q is not a stream sequence", p)
		}
		*s = append(*s, n)
	}
	return nil
}

func rawJSON(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	q, _ := json.Marshal(string(b)) // not JSON (that may be why it was dead-lettered): quote it
	return q
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}
