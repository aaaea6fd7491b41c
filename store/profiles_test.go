package store

import (
	"context"
	"encoding/json"
	"testing"
	"time"
)

// TestTokenProfiles: one row per token (label and serial); learning a
// token's profile again replaces its row; rows that are not JSON are
// refused, by the Store and by the table's CHECK.
func TestTokenProfiles(t *testing.T) { forEachBackend(t, testTokenProfiles) }

func testTokenProfiles(t *testing.T, bk backend) {
	s := bk.open(t)
	ctx := context.Background()
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, p := range []TokenProfile{
		{TokenLabel: "tpm", TokenSerial: "1", LearnedBy: "csrd", LearnedTime: at, Profile: json.RawMessage(`{"v":1}`)},
		{TokenLabel: "tpm", TokenSerial: "2", LearnedBy: "csrd", LearnedTime: at, Profile: json.RawMessage(`{"v":2}`)},
		{TokenLabel: "tpm", TokenSerial: "1", LearnedBy: "csrctl token probe", LearnedTime: at.Add(time.Hour), Profile: json.RawMessage(`{"v":3}`)},
	} {
		if err := s.SaveTokenProfile(ctx, &p); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SaveTokenProfile(ctx, &TokenProfile{TokenLabel: "x", LearnedBy: "csrd", Profile: json.RawMessage(`{`)}); err == nil {
		t.Error("a profile that is not JSON was saved")
	}
	if _, err := s.w.ExecContext(ctx, `INSERT INTO token_profiles VALUES (?, ?, ?, ?, ?)`,
		"y", "", formatTime(at), "csrd", "{"); err == nil {
		t.Error("the table took a profile that is not JSON")
	}
	got, err := s.TokenProfiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || string(got[0].Profile) != `{"v":3}` || got[0].LearnedBy != "csrctl token probe" ||
		!got[0].LearnedTime.Equal(at.Add(time.Hour)) || got[1].TokenSerial != "2" || string(got[1].Profile) != `{"v":2}` {
		t.Errorf("profiles %+v", got)
	}
}
