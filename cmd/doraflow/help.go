package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// command describes one command for its --help: what it does and how it is used.
type command struct {
	name     string // "doraflow dlq list"
	args     string // what follows the name: "[flags]", "FILE"
	about    string // a paragraph: what the command does
	examples []string
}

// flags returns the command's FlagSet. Parse it with parse, which prints the help on --help.
func (c command) flags() *flag.FlagSet {
	fs := flag.NewFlagSet(c.name, flag.ContinueOnError)
	// The flag package would print every parse error and the whole usage to its output; parse reports
	// errors once, as the returned error, and prints the usage only for --help.
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// parse parses args. --help prints the help to out and returns flag.ErrHelp (run returns nil for it).
// Positional arguments beyond maxArgs are an error.
func (c command) parse(fs *flag.FlagSet, args []string, out io.Writer, maxArgs int) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			c.help(out, fs)
			return err
		}
		return fmt.Errorf("%s: %w (see %s --help)", c.name, err, c.name)
	}
	if fs.NArg() > maxArgs {
		return fmt.Errorf("%s: unexpected arguments %q (see %s --help)", c.name, fs.Args()[maxArgs:], c.name)
	}
	return nil
}

// help prints the description, the flags (as --name, with their defaults) and the examples.
func (c command) help(out io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(out, "Usage: %s %s\n\n%s\n", c.name, c.args, c.about)
	var flags []string
	fs.VisitAll(func(f *flag.Flag) {
		placeholder, usage := flag.UnquoteUsage(f)
		line := "  --" + f.Name
		if placeholder != "" {
			line += " " + placeholder
		}
		usage = strings.ReplaceAll(usage, "\n", "\n      ")
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
			usage += fmt.Sprintf(" (default %s)", d)
		}
		flags = append(flags, line+"\n      "+usage)
	})
	if len(flags) > 0 {
		fmt.Fprintf(out, "\nFlags:\n%s\n", strings.Join(flags, "\n"))
	}
	if len(c.examples) > 0 {
		fmt.Fprintf(out, "\nExamples:\n  %s\n", strings.Join(c.examples, "\n  "))
	}
}
