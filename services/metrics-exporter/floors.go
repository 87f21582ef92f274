package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/doraflow/doraflow/services/metrics-exporter/internal/dora"
)

// floorsBucket is the JetStream KV bucket holding the served counter and histogram high-water
// marks, one key per replica, merged by maximum on start (ADR 0008).
const floorsBucket = "metrics-exporter-floors"

// floorsInterval is how often the marks are saved (and once more at shutdown).
const floorsInterval = time.Minute

// floors saves and loads the guard's marks.
type floors struct {
	kv    jetstream.KeyValue
	key   string
	guard *dora.Guard
	log   zerolog.Logger
}

var keyUnsafe = regexp.MustCompile(`[^-_=.a-zA-Z0-9]`)

// replicaKey names this replica's key: its host name (the pod name), else "default".
func replicaKey() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "default"
	}
	return keyUnsafe.ReplaceAllString(h, "_")
}

func openFloors(ctx context.Context, js jetstream.JetStream, guard *dora.Guard, log zerolog.Logger) (*floors, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: floorsBucket,
		Description: "metrics-exporter: served counter and histogram high-water marks (floors after a restart)"})
	if err != nil {
		return nil, fmt.Errorf("open KV bucket %s: %w", floorsBucket, err)
	}
	return &floors{kv: kv, key: replicaKey(), guard: guard, log: log}, nil
}

// load gives the guard every replica's saved marks.
func (f *floors) load(ctx context.Context) error {
	keys, err := f.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list %s: %w", floorsBucket, err)
	}
	n := 0
	for k := range keys.Keys() {
		e, err := f.kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("get %s/%s: %w", floorsBucket, k, err)
		}
		marks, err := decodeMarks(e.Value())
		if err != nil {
			f.log.Warn().Err(err).Str("key", k).Msg("floors unreadable; ignored")
			continue
		}
		f.guard.SetFloors(marks)
		n += len(marks)
	}
	f.log.Info().Int("marks", n).Msg("loaded counter floors")
	return nil
}

// save writes this replica's marks.
func (f *floors) save(ctx context.Context) error {
	b, err := encodeMarks(f.guard.Marks())
	if err != nil {
		return err
	}
	if _, err := f.kv.Put(ctx, f.key, b); err != nil {
		return fmt.Errorf("put %s/%s: %w", floorsBucket, f.key, err)
	}
	return nil
}

// run saves the marks every floorsInterval and at shutdown.
func (f *floors) run(ctx context.Context) error {
	t := time.NewTicker(floorsInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := f.save(sctx); err != nil {
				f.log.Warn().Err(err).Msg("save counter floors at shutdown")
			}
			return nil
		case <-t.C:
			if err := f.save(ctx); err != nil {
				f.log.Warn().Err(err).Msg("save counter floors")
			}
		}
	}
}

func encodeMarks(marks []dora.Mark) ([]byte, error) {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if err := json.NewEncoder(zw).Encode(marks); err != nil {
		return nil, fmt.Errorf("encode floors: %w", err)
	}
	if err := zw.Close(); err != nil {
		return nil, fmt.Errorf("compress floors: %w", err)
	}
	return b.Bytes(), nil
}

func decodeMarks(b []byte) ([]dora.Mark, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("decompress floors: %w", err)
	}
	var marks []dora.Mark
	if err := json.NewDecoder(io.LimitReader(zr, 256<<20)).Decode(&marks); err != nil {
		return nil, fmt.Errorf("decode floors: %w", err)
	}
	return marks, nil
}
