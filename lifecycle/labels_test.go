package lifecycle_test

import (
	"testing"

	"github.com/csrd/csrd/hsm"
	"github.com/csrd/csrd/lifecycle"
)

func TestParseLabel(t *testing.T) {
	tests := []struct {
		label   string
		id      int64
		alt, ok bool
	}{
		{lifecycle.Label(12), 12, false, true},
		{lifecycle.Label(12) + "-alt", 12, true, true},
		{"csrd-2147483647", 2147483647, false, true},
		{hsm.KEKLabel, 0, false, false},
		{"csrd-", 0, false, false},
		{"csrd--alt", 0, false, false},
		{"csrd-012", 0, false, false},
		{"csrd-12-alt-alt", 0, false, false},
		{"csrd-12x", 0, false, false},
		{"csrd-+12", 0, false, false},
		{"csrd-0", 0, false, false},
		{"other-12", 0, false, false},
		{"csrd-99999999999999999999", 0, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			id, alt, ok := lifecycle.ParseLabel(tt.label)
			if id != tt.id || alt != tt.alt || ok != tt.ok {
				t.Errorf("ParseLabel(%q) = %d, %v, %v; want %d, %v, %v", tt.label, id, alt, ok, tt.id, tt.alt, tt.ok)
			}
		})
	}
}
