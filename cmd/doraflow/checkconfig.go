package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/doraflow/doraflow/internal/config"
)

// `doraflow check-config` runs every service binary's own --check-config on the file and merges what
// they say. The validation stays where it is, next to each service's config types: services must not
// import each other (STYLE.md), and moving five services' rules into the shared internal module would
// make it everyone's dependency. The binaries are the authority, so the CLI cannot drift from them.
//
// A binary drops the sections of the other services and re-encodes the rest before its strict decode,
// so its yaml.v3 "line N" refers to that re-encoded document. The CLI rebuilds the same document
// (each binary's sections come from its --config-reference) to turn each line into its YAML key path
// and the line of the original file, and rewrites yaml.v3's Go type names into what the key expects.

var checkConfigCommand = command{name: "doraflow check-config", args: "FILE [--bin DIR]",
	about: `Validates every service's section of a shared doraflow YAML file at once: each service binary
checks its own sections (its --check-config), and every problem is listed once, with its YAML key path
and line. Exit status 1 when there is a problem. The binaries are taken from --bin, else from the
directory of the doraflow binary, else from ./bin (make build).`,
	examples: []string{
		"doraflow check-config deploy/config.yaml",
		"doraflow check-config --bin bin .run/config.yaml",
	}}

func checkConfig(ctx context.Context, args []string, out io.Writer) error {
	fs := checkConfigCommand.flags()
	bin := fs.String("bin", "", "`directory` holding the service binaries (default: next to doraflow, else ./bin)")
	// Flags may come before or after FILE.
	var files []string
	for {
		if err := checkConfigCommand.parse(fs, args, out, 1<<20); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		files, args = append(files, fs.Arg(0)), fs.Args()[1:]
	}
	if len(files) != 1 {
		return fmt.Errorf("check-config needs one FILE, got %d (see doraflow check-config --help)", len(files))
	}
	file := files[0]
	src, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	dir, err := serviceBinDir(*bin)
	if err != nil {
		return err
	}
	merged := map[string][]string{} // problem → services that reported it
	var order []string
	for _, s := range services {
		problems, err := checkWith(ctx, filepath.Join(dir, s), file, src)
		if err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
		for _, p := range problems {
			if merged[p] == nil {
				order = append(order, p)
			}
			merged[p] = append(merged[p], s)
		}
	}
	if len(order) == 0 {
		fmt.Fprintf(out, "%s: ok (%s)\n", file, strings.Join(services, ", "))
		return nil
	}
	sort.SliceStable(order, func(i, j int) bool { return problemLine(order[i]) < problemLine(order[j]) })
	fmt.Fprintf(out, "%s: %d problem(s)\n", file, len(order))
	for _, p := range order {
		who := strings.Join(merged[p], ", ")
		if len(merged[p]) == len(services) {
			who = "every service"
		}
		fmt.Fprintf(out, "  %s  [%s]\n", p, who)
	}
	return errReported
}

// serviceBinDir finds the directory of the service binaries.
func serviceBinDir(flagValue string) (string, error) {
	var candidates []string
	if flagValue != "" {
		candidates = []string{flagValue}
	} else {
		if exe, err := os.Executable(); err == nil {
			candidates = append(candidates, filepath.Dir(exe))
		}
		candidates = append(candidates, "bin")
	}
	for _, d := range candidates {
		if _, err := os.Stat(filepath.Join(d, services[0])); err == nil {
			return d, nil
		}
	}
	return "", fmt.Errorf("no service binaries in %s: run `make build`, or pass --bin", strings.Join(candidates, " or "))
}

// checkWith runs one binary's --check-config and returns its problems, each with its key path.
func checkWith(ctx context.Context, bin, file string, src []byte) ([]string, error) {
	var ref struct {
		Defaults map[string]any `json:"defaults"`
	}
	refOut, err := exec.CommandContext(ctx, bin, "--config-reference").Output()
	if err != nil {
		return nil, fmt.Errorf("%s --config-reference: %w", bin, err)
	}
	if err := json.Unmarshal(refOut, &ref); err != nil {
		return nil, fmt.Errorf("%s --config-reference: %w", bin, err)
	}
	var stdout bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--check-config", file)
	cmd.Stdout, cmd.Stderr = &stdout, io.Discard // stderr repeats the problems as one error
	err = cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return nil, nil
	case !errors.As(err, &exit):
		return nil, err
	}
	loc := newLocator(src, ref.Defaults)
	var problems []string
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			problems = append(problems, loc.explain(line))
		}
	}
	if len(problems) == 0 {
		return nil, fmt.Errorf("--check-config %s failed without saying why: %w", file, err)
	}
	return problems, nil
}

// locator maps the line numbers of a binary's re-encoded document to key paths and original lines.
type locator struct {
	reencoded []place        // nodes of the document the binary decoded
	original  map[string]int // key path → line in the file
}

type place struct {
	line  int
	path  string
	key   string // the key's name when the node is a key
	value string // the scalar's value
	kind  yaml.Kind
}

func newLocator(src []byte, own map[string]any) locator {
	l := locator{original: map[string]int{}}
	var doc yaml.Node
	if yaml.Unmarshal(src, &doc) != nil || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return l
	}
	for _, p := range walk(doc.Content[0], "") {
		if _, seen := l.original[p.path]; !seen {
			l.original[p.path] = p.line
		}
	}
	// The binary's view, as config.Decode builds it: the sections of other services dropped, the rest
	// re-encoded.
	root := doc.Content[0]
	kept := root.Content[:0:0]
	for i := 0; i+1 < len(root.Content); i += 2 {
		k := root.Content[i].Value
		if _, mine := own[k]; !mine && contains(config.Sections, k) {
			continue
		}
		kept = append(kept, root.Content[i], root.Content[i+1])
	}
	root.Content = kept
	b, err := yaml.Marshal(&doc)
	if err != nil {
		return l
	}
	var re yaml.Node
	if yaml.Unmarshal(b, &re) == nil && len(re.Content) == 1 {
		l.reencoded = walk(re.Content[0], "")
	}
	return l
}

// walk lists every key and value node with its path.
func walk(n *yaml.Node, path string) []place {
	var out []place
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			out = append(out, place{line: k.Line, path: p, key: k.Value, kind: yaml.ScalarNode})
			out = append(out, place{line: v.Line, path: p, value: v.Value, kind: v.Kind})
			out = append(out, walk(v, p)...)
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			out = append(out, place{line: v.Line, path: p, value: v.Value, kind: v.Kind})
			out = append(out, walk(v, p)...)
		}
	}
	return out
}

var (
	reUnknown   = regexp.MustCompile(`^line (\d+): field (\S+) not found in type \S+$`)
	reDuplicate = regexp.MustCompile(`^line (\d+): field (\S+) already set in type \S+$`)
	reType      = regexp.MustCompile("^line (\\d+): cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// explain rewrites one line of a binary's --check-config output: yaml.v3's line of the re-encoded
// document becomes the key path and the file's line; Go type names become what the key expects.
func (l locator) explain(problem string) string {
	if m := reUnknown.FindStringSubmatch(problem); m != nil {
		return l.at(m[1], func(p place) bool { return p.key == m[2] }, "unknown key")
	}
	if m := reDuplicate.FindStringSubmatch(problem); m != nil {
		return l.at(m[1], func(p place) bool { return p.key == m[2] }, "key given twice")
	}
	if m := reType.FindStringSubmatch(problem); m != nil {
		value := strings.TrimSuffix(m[3], "...")
		match := func(p place) bool {
			switch m[2] {
			case "!!seq":
				return p.key == "" && p.kind == yaml.SequenceNode
			case "!!map":
				return p.key == "" && p.kind == yaml.MappingNode
			}
			return p.key == "" && p.kind == yaml.ScalarNode && strings.HasPrefix(p.value, value)
		}
		got := yamlKind(m[2])
		if m[3] != "" {
			got += " " + strconv.Quote(m[3])
		}
		if want := goTypeName(m[4]); want != "" {
			return l.at(m[1], match, "want "+want+", got "+got)
		}
		return l.at(m[1], match, "wrong kind of value: "+got)
	}
	return problem // already "path: message" (validation), or a syntax error
}

// at finds the node on the re-encoded line that match accepts and says "path (line N): msg".
func (l locator) at(lineStr string, match func(place) bool, msg string) string {
	line, _ := strconv.Atoi(lineStr)
	for _, p := range l.reencoded {
		if p.line == line && match(p) {
			if orig, ok := l.original[p.path]; ok {
				return fmt.Sprintf("%s (line %d): %s", p.path, orig, msg)
			}
			return p.path + ": " + msg
		}
	}
	return fmt.Sprintf("line %d of the re-encoded section: %s", line, msg)
}

// problemLine is the file line a problem names, for sorting (problems without one come first).
func problemLine(p string) int {
	if i := strings.Index(p, "(line "); i >= 0 {
		n, _ := strconv.Atoi(strings.TrimRight(strings.Fields(p[i+6:])[0], "):"))
		return n
	}
	return 0
}

func yamlKind(tag string) string {
	switch tag {
	case "!!str":
		return "the string"
	case "!!int":
		return "the integer"
	case "!!float":
		return "the number"
	case "!!bool":
		return "the boolean"
	case "!!seq":
		return "a list"
	case "!!map":
		return "a mapping"
	case "!!null":
		return "nothing"
	}
	return tag
}

// goTypeName says what a Go type expects, in YAML terms.
func goTypeName(t string) string {
	switch {
	case t == "time.Duration":
		return "a duration (like 30s, 5m or 168h)"
	case t == "time.Time":
		return "a time (RFC 3339, like 2026-03-10T14:00:00Z)"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case strings.HasPrefix(t, "map[") || strings.HasPrefix(t, "struct"):
		return "a mapping"
	}
	return "" // a named type: its kind is not in the message
}
