package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/csrd/csrd/auth"
	"github.com/csrd/csrd/config"
)

// defaultConfigPath is where the packaged csrd reads its configuration.
const defaultConfigPath = "/etc/csrd/csrd.yaml"

// grantFlags are the flags user add and token create share.
type grantFlags struct {
	config, authFile, ops, patterns, templates *string
}

func addGrantFlags(fs *flag.FlagSet) grantFlags {
	return grantFlags{
		config:   fs.String("config", defaultConfigPath, "csrd configuration file (for auth.file)"),
		authFile: fs.String("auth-file", "", "auth file to edit (overrides auth.file from -config)"),
		ops: fs.String("op", "", "comma-separated operations to grant (required): "+
			"generate, pending_read, pending_delete, import, metrics, admin"),
		patterns:  fs.String("pattern", "", "comma-separated enrollment pattern ids the identity may generate for (default: any)"),
		templates: fs.String("template", "", "comma-separated templates the identity may generate for (default: any)"),
	}
}

// path returns the auth file to edit: -auth-file, else auth.file from the
// configuration.
func (g grantFlags) path() (string, error) {
	if *g.authFile != "" {
		return *g.authFile, nil
	}
	cfg, err := config.Load(*g.config)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("%w (pass -config FILE or -auth-file FILE)", err)
		}
		return "", err
	}
	if cfg.Auth.File == "" {
		return "", fmt.Errorf("%s sets no auth.file; pass -auth-file FILE", *g.config)
	}
	return cfg.Auth.File, nil
}

func (g grantFlags) grants() (auth.Grants, error) {
	ops, err := auth.ParseOperations(*g.ops)
	if err != nil {
		return auth.Grants{}, usageErr("-op: %v", err)
	}
	if len(ops) == 0 {
		return auth.Grants{}, usageErr("-op is required, e.g. -op generate,pending_read")
	}
	gr := auth.Grants{Operations: ops}
	for _, f := range splitList(*g.patterns) {
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return auth.Grants{}, usageErr("-pattern: %q is not an enrollment pattern id", f)
		}
		gr.EnrollmentPatterns = append(gr.EnrollmentPatterns, n)
	}
	gr.Templates = splitList(*g.templates)
	return gr, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func describeGrants(g auth.Grants) string {
	ops := make([]string, len(g.Operations))
	for i, o := range g.Operations {
		ops[i] = string(o)
	}
	s := strings.Join(ops, ",")
	if len(g.EnrollmentPatterns) > 0 {
		s += fmt.Sprintf("; patterns %v", g.EnrollmentPatterns)
	}
	if len(g.Templates) > 0 {
		s += "; templates " + strings.Join(g.Templates, ",")
	}
	return s
}
