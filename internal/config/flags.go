package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Flags are the command-line flags every doraflow binary accepts.
type Flags struct {
	// ConfigPath is the behaviour YAML (--config); empty means built-in defaults.
	ConfigPath string
	// CheckConfig is a YAML file to validate and exit (--check-config).
	CheckConfig string
	// Version asks to print the version and exit (--version).
	Version bool
	// Reference asks to print the configuration reference as JSON and exit (--config-reference).
	Reference bool
}

// ErrHelp is returned when --help was asked for; the usage has been printed and the process should
// exit 0.
var ErrHelp = flag.ErrHelp

// ParseFlags parses args for the binary name. extra registers service-specific flags on the same
// FlagSet. Usage goes to out.
func ParseFlags(name string, args []string, out io.Writer, env []EnvVar, extra func(*flag.FlagSet)) (Flags, error) {
	var f Flags
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	fs.StringVar(&f.ConfigPath, "config", "", "behaviour `file` (YAML); built-in defaults when empty")
	fs.StringVar(&f.CheckConfig, "check-config", "", "validate the YAML `file`, print every problem, exit 0 or 1")
	fs.BoolVar(&f.Version, "version", false, "print the version and exit")
	fs.BoolVar(&f.Reference, "config-reference", false, "print the environment variables and YAML defaults as JSON and exit")
	if extra != nil {
		extra(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: %s [flags]\n\nFlags:\n", name)
		fs.PrintDefaults()
		if len(env) > 0 {
			fmt.Fprintf(out, "\nEnvironment:\n")
			for _, v := range env {
				line := "  " + v.Name
				switch {
				case v.Required:
					line += " (required)"
				case v.Default != "":
					line += " (default " + v.Default + ")"
				}
				fmt.Fprintf(out, "%s\n    \t%s\n", line, v.Usage)
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return f, ErrHelp
		}
		return f, err
	}
	if fs.NArg() > 0 {
		return f, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return f, nil
}
