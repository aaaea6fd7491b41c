package main

import (
	"testing"

	"github.com/csrd/csrd/health"
)

func TestStatusLine(t *testing.T) {
	cases := []struct {
		name   string
		report health.Report
		states map[string]string
		want   string
	}{
		{"ready", health.Report{Ready: true, Checks: map[string]bool{"hsm": true, "database": true}},
			map[string]string{"a": "ok"}, "serving http://127.0.0.1:8080"},
		{"failing checks, sorted", health.Report{Checks: map[string]bool{"policy": true, "hsm": false, "database": false}},
			map[string]string{"a": "ok"}, "not ready (database, hsm failing); serving http://127.0.0.1:8080"},
		{"ready, one token waiting", health.Report{Ready: true, Checks: map[string]bool{"hsm": true}},
			map[string]string{"b": "PIN refused", "a": "ok"},
			`serving http://127.0.0.1:8080; waiting for HSM (token "b": PIN refused)`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusLine(tc.report, tc.states, "http://127.0.0.1:8080"); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
