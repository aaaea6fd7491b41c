package bench

import (
	"strings"
	"testing"
)

// TestMarkdownFillSentence: the "filled" note says what the fill did,
// including when the earlier cells had already left enough keys.
func TestMarkdownFillSentence(t *testing.T) {
	tests := []struct {
		name      string
		fill      FillInfo
		want, not string
	}{
		{"keys added", FillInfo{Added: 3854, Total: 10000, Seconds: 14.6},
			"brought to 10000 csrd keys with records (3854 added in 15s", "none were added"},
		{"nothing to add", FillInfo{Added: 0, Total: 10000},
			"already left at least 10000 csrd keys with records on the token, so none were added", "0 added"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &Report{Fill: &tt.fill}
			md := r.Markdown()
			if !strings.Contains(md, tt.want) {
				t.Errorf("markdown lacks %q:\n%s", tt.want, md)
			}
			if strings.Contains(md, tt.not) {
				t.Errorf("markdown says %q:\n%s", tt.not, md)
			}
		})
	}
}
