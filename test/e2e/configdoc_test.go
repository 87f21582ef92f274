package e2e

import (
	"encoding/json"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files (docs/configuration.md)")

const configDoc = "configuration.md"

// reference is what a service binary prints for --config-reference.
type reference struct {
	Service string `json:"service"`
	Env     []struct {
		Name     string `json:"name"`
		Default  string `json:"default"`
		Required bool   `json:"required"`
		Secret   bool   `json:"secret"`
		Usage    string `json:"usage"`
	} `json:"env"`
	Defaults map[string]any `json:"defaults"`
}

// TestConfigurationDocMatchesCode renders docs/configuration.md from the code — every environment
// variable each binary reads (--config-reference), every YAML key of its configuration struct with
// its Go doc comment, type and built-in default — and fails when the committed file differs. Run
// `make golden` (or this test with -update) after changing configuration, and review the diff.
func TestConfigurationDocMatchesCode(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the five binaries")
	}
	bin := binaries(t)
	var refs []reference
	for _, s := range services {
		out, err := exec.Command(filepath.Join(bin, s), "--config-reference").Output()
		if err != nil {
			t.Fatalf("%s --config-reference: %v", s, err)
		}
		var r reference
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("%s --config-reference: %v\n%s", s, err, out)
		}
		refs = append(refs, r)
	}
	got := renderConfigDoc(t, refs)
	path := filepath.Join("..", "..", "docs", configDoc)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s (run make golden to create it): %v", path, err)
	}
	if string(want) != got {
		t.Errorf("docs/%s does not match the code; run `make golden` and review the diff. Generated:\n%s", configDoc, got)
	}
}

func renderConfigDoc(t *testing.T, refs []reference) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Configuration reference\n\n")
	b.WriteString("<!-- Generated from the code by test/e2e/configdoc_test.go (`make golden`). Do not edit by hand: a test fails when this file and the code disagree. -->\n\n")
	b.WriteString("Every service reads **behaviour** from one YAML file (`--config FILE`) and **endpoints, identities and\n")
	b.WriteString("secrets** from the environment ([ADR 0002](adr/0002-configuration-sources.md)). One file may configure\n")
	b.WriteString("every service: each ignores the other services' top-level sections and rejects any other unknown key.\n")
	b.WriteString("Validate a file with `<service> --check-config FILE`. A secret variable `NAME` may instead be given as\n")
	b.WriteString("`NAME_FILE`, the path of a file holding it (a mounted Kubernetes Secret).\n\n")

	// Variables every service reads come first, once.
	count := map[string]int{}
	for _, r := range refs {
		for _, v := range r.Env {
			count[v.Name]++
		}
	}
	shared := map[string]bool{}
	b.WriteString("## Environment shared by every service\n\n")
	b.WriteString("| Variable | Default | Description |\n|---|---|---|\n")
	for _, v := range refs[0].Env {
		if count[v.Name] == len(refs) {
			shared[v.Name] = true
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", v.Name, cell(v.Default, v.Required), escape(v.Usage))
		}
	}
	for _, r := range refs {
		fmt.Fprintf(&b, "\n## %s\n\n", r.Service)
		var own []string
		for _, v := range r.Env {
			if !shared[v.Name] {
				secret := ""
				if v.Secret {
					secret = " (secret)"
				}
				own = append(own, fmt.Sprintf("| `%s` | %s | %s%s |", v.Name, cell(v.Default, v.Required), escape(v.Usage), secret))
			}
		}
		if len(own) > 0 {
			b.WriteString("### Environment\n\n| Variable | Default | Description |\n|---|---|---|\n")
			b.WriteString(strings.Join(own, "\n") + "\n\n")
		}
		b.WriteString("### YAML\n\n| Key | Type | Default | Description |\n|---|---|---|---|\n")
		for _, f := range configFields(t, r.Service) {
			def := lookup(r.Defaults, f.path)
			fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", f.path, f.typ, def, escape(f.doc))
		}
	}
	return b.String()
}

type field struct{ path, typ, doc string }

// configFields parses a service's package and lists the YAML keys of its `rules` type, depth first,
// with each field's Go type and doc comment. Sections shared by several services are types of
// internal/config (config.Integration), followed there.
func configFields(t *testing.T, service string) []field {
	t.Helper()
	structs := map[string]*ast.StructType{} // by type name; "config.Name" for internal/config
	parseStructs(t, filepath.Join("..", "..", "services", service), "", structs)
	parseStructs(t, filepath.Join("..", "..", "internal", "config"), "config", structs)
	root, ok := structs["rules"]
	if !ok {
		t.Fatalf("%s: no type rules in services/%s", service, service)
	}
	// resolve names the struct type e refers to from package pkg ("" for the service's own), and
	// the package that declares it.
	resolve := func(pkg string, e ast.Expr) (key, declPkg string) {
		switch x := e.(type) {
		case *ast.Ident:
			if pkg == "" {
				return x.Name, ""
			}
			return pkg + "." + x.Name, pkg
		case *ast.SelectorExpr:
			if id, ok := x.X.(*ast.Ident); ok && id.Name == "config" {
				return "config." + x.Sel.Name, "config"
			}
		}
		return "", ""
	}
	var out []field
	var walk func(prefix, pkg string, st *ast.StructType, depth int)
	walk = func(prefix, pkg string, st *ast.StructType, depth int) {
		for _, f := range st.Fields.List {
			if len(f.Names) == 0 || !f.Names[0].IsExported() || f.Tag == nil {
				continue
			}
			tag := reflect.StructTag(strings.Trim(f.Tag.Value, "`")).Get("yaml")
			name, _, _ := strings.Cut(tag, ",")
			if name == "" || name == "-" {
				continue
			}
			path := prefix + name
			doc := strings.Join(strings.Fields(f.Doc.Text()+" "+f.Comment.Text()), " ")
			elem, isList := f.Type, false
			if arr, ok := f.Type.(*ast.ArrayType); ok {
				elem, isList = arr.Elt, true
			}
			if key, elemPkg := resolve(pkg, elem); structs[key] != nil && depth < 8 {
				if isList {
					out = append(out, field{path, "list", doc})
					walk(path+"[].", elemPkg, structs[key], depth+1)
				} else {
					if doc != "" {
						out = append(out, field{path, "section", doc})
					}
					walk(path+".", elemPkg, structs[key], depth+1)
				}
				continue
			}
			out = append(out, field{path, types.ExprString(f.Type), doc})
		}
	}
	walk("", "", root, 0)
	return out
}

// parseStructs adds the struct types declared in dir's non-test files to structs, named
// pkg + "." + name (just name when pkg is empty).
func parseStructs(t *testing.T, dir, pkg string, structs map[string]*ast.StructType) {
	t.Helper()
	fset := token.NewFileSet()
	matches, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range matches {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			g, ok := d.(*ast.GenDecl)
			if !ok || g.Tok != token.TYPE {
				continue
			}
			for _, spec := range g.Specs {
				ts, ok := spec.(*ast.TypeSpec)
				if !ok {
					continue
				}
				if st, ok := ts.Type.(*ast.StructType); ok {
					key := ts.Name.Name
					if pkg != "" {
						key = pkg + "." + key
					}
					structs[key] = st
				}
			}
		}
	}
}

// lookup renders the default at a dotted path ("a.b[].c" has no single default).
func lookup(defaults map[string]any, path string) string {
	if strings.Contains(path, "[]") {
		return ""
	}
	var cur any = defaults
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return ""
		}
		cur = m[p]
	}
	switch v := cur.(type) {
	case nil:
		return ""
	case string:
		if v == "" {
			return ""
		}
		return "`" + v + "`"
	case map[string]any:
		if len(v) == 0 {
			return ""
		}
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b, _ := json.Marshal(v)
		return "`" + string(b) + "`"
	case []any:
		if len(v) == 0 {
			return ""
		}
		b, _ := json.Marshal(v)
		return "`" + string(b) + "`"
	case bool:
		return fmt.Sprintf("`%t`", v)
	default:
		return fmt.Sprintf("`%v`", v)
	}
}

func cell(def string, required bool) string {
	switch {
	case required:
		return "required"
	case def == "":
		return ""
	default:
		return "`" + def + "`"
	}
}

func escape(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
