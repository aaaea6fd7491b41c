package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// TokenProfile is a token's profile as last learned: by csrd when it
// admits the token, or by `csrctl token probe`. Profile is the JSON
// document hsm.Profile marshals to; the store does not look inside.
type TokenProfile struct {
	TokenLabel  string
	TokenSerial string
	LearnedTime time.Time
	LearnedBy   string
	Profile     json.RawMessage
}

const (
	profileColumns = `token_label, token_serial, learned_time, learned_by, profile`
	saveProfileSQL = `INSERT INTO token_profiles (` + profileColumns + `) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (token_label, token_serial) DO UPDATE SET learned_time = excluded.learned_time,
    learned_by = excluded.learned_by, profile = excluded.profile`
	listProfilesSQL = `SELECT ` + profileColumns + ` FROM token_profiles ORDER BY token_label, token_serial`
)

// SaveTokenProfile records p, replacing the token's earlier profile. A
// zero LearnedTime is now.
func (s *Store) SaveTokenProfile(ctx context.Context, p *TokenProfile) error {
	if p.TokenLabel == "" || p.LearnedBy == "" || !json.Valid(p.Profile) {
		return errors.New("store: save token profile: token label, learned by and a JSON profile are required")
	}
	learned := p.LearnedTime
	if learned.IsZero() {
		learned = s.now()
	}
	return s.withTx(ctx, "save token profile", func(ctx context.Context, tx *sql.Tx) error {
		_, err := s.txExec(ctx, tx, saveProfileSQL, p.TokenLabel, p.TokenSerial, formatTime(learned), p.LearnedBy, string(p.Profile))
		return dbErr("save token profile", err)
	})
}

// TokenProfiles returns every recorded profile, by token label and serial.
func (s *Store) TokenProfiles(ctx context.Context) ([]TokenProfile, error) {
	rows, err := s.query(ctx, listProfilesSQL)
	if err != nil {
		return nil, dbErr("list token profiles", err)
	}
	defer rows.Close()
	var out []TokenProfile
	for rows.Next() {
		var (
			p       TokenProfile
			learned string
			doc     string
		)
		if err := rows.Scan(&p.TokenLabel, &p.TokenSerial, &learned, &p.LearnedBy, &doc); err != nil {
			return nil, dbErr("list token profiles", err)
		}
		if p.LearnedTime, err = parseTime(learned); err != nil {
			return nil, fmt.Errorf("store: token profile of %q: learned_time %q: %w", p.TokenLabel, learned, err)
		}
		p.Profile = json.RawMessage(doc)
		out = append(out, p)
	}
	return out, dbErr("list token profiles", rows.Err())
}
