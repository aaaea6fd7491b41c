package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/csrd/csrd/config"
	"github.com/csrd/csrd/policy"
)

func runPolicyCheck(fs *flag.FlagSet, args []string, stdout, _ io.Writer) error {
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErr("policy check takes exactly one FILE")
	}
	file := fs.Arg(0)
	e, err := config.LoadPolicy(file)
	if err != nil {
		var le *policy.LoadError
		if errors.As(err, &le) {
			fmt.Fprintf(stdout, "%s: INVALID, %d problem(s):\n", file, len(le.Problems))
			for _, p := range le.Problems {
				fmt.Fprintf(stdout, "  - %s\n", p)
			}
			return fmt.Errorf("%s is not a valid policy file", file)
		}
		return err
	}
	printPolicy(stdout, e)
	return nil
}

// printPolicy prints what an operator needs to see before deploying a
// file: every warning, and per pattern the rules that actually apply.
func printPolicy(w io.Writer, e *policy.Engine) {
	info := e.Info()
	fmt.Fprintf(w, "%s: OK (sha256 %s, %d enrollment patterns, %d templates)\n", info.Source, info.SHA256, len(e.Patterns()), len(e.Templates()))
	for _, warn := range e.Warnings() {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	st := e.Settings()
	fmt.Fprintln(w, "\nsystem-wide settings:")
	printRules(w, st.Policies, st.Regexes, st.Defaults)
	for _, p := range e.Patterns() {
		var tags []string
		if p.Default {
			tags = append(tags, "default pattern")
		}
		if p.TemplateDefault {
			tags = append(tags, "template default")
		}
		tmpl := "none"
		if p.Template != nil {
			tmpl = p.Template.Name
			if p.Template.OID != "" {
				tmpl += " (" + p.Template.OID + ")"
			}
		}
		fmt.Fprintf(w, "\nenrollment pattern %d %q", p.ID, p.Name)
		if len(tags) > 0 {
			fmt.Fprintf(w, " [%s]", strings.Join(tags, ", "))
		}
		fmt.Fprintf(w, "\n  template:    %s\n  enrollment:  %s\n", tmpl, enrollmentTypes(p.AllowedEnrollmentTypes))
		printRules(w, p.Policies, p.Regexes, p.Defaults)
	}
}

func printRules(w io.Writer, e policy.Effective, regexes []policy.Regex, defaults []policy.SubjectDefault) {
	onOff := func(b bool) string {
		if b {
			return "on"
		}
		return "off"
	}
	maxSANs := "csrd's bound (1000)"
	if e.MaxSANs > 0 {
		maxSANs = fmt.Sprint(e.MaxSANs)
	}
	fmt.Fprintf(w, "  primary:     %s\n", policy.DescribeRules(e.PrimaryKeyAlgorithms))
	fmt.Fprintf(w, "  alternative: %s (sealed seeds %s)\n", policy.DescribeRules(e.AlternativeKeyAlgorithms), map[bool]string{true: "allowed", false: "refused"}[e.AllowSealedAlternativeKeys])
	fmt.Fprintf(w, "  names:       wildcards %s, RFC enforcement %s, minimum RSA %d, max SANs %s\n", onOff(e.AllowWildcards), onOff(e.RFCEnforcement), e.MinimumRSAKeySize, maxSANs)
	for _, r := range regexes {
		cs := ""
		if r.CaseSensitive != nil && !*r.CaseSensitive {
			cs = " (case-insensitive)"
		}
		fmt.Fprintf(w, "  regex:       %s %s%s\n", r.SubjectPart, r.Regex, cs)
	}
	for _, d := range defaults {
		fmt.Fprintf(w, "  default:     %s=%s\n", d.SubjectPart, d.Value)
	}
}

func enrollmentTypes(t int) string {
	var names []string
	for _, b := range []struct {
		bit  int
		name string
	}{{policy.EnrollPFX, "PFX"}, {policy.EnrollCSR, "CSR enrollment"}, {policy.EnrollCSRGeneration, "CSR Generation"}} {
		if t&b.bit != 0 {
			names = append(names, b.name)
		}
	}
	if len(names) == 0 {
		names = []string{"nothing"}
	}
	return fmt.Sprintf("%d (%s)", t, strings.Join(names, ", "))
}
