package store

import "testing"

func TestRebind(t *testing.T) {
	tests := []struct{ in, want string }{
		{`SELECT a FROM t WHERE x = ? AND y = ?`, `SELECT a FROM t WHERE x = $1 AND y = $2`},
		{`WHERE (?1 = '' OR s = ?1) LIMIT ?12`, `WHERE ($1 = '' OR s = $1) LIMIT $12`},
		{`SELECT '?', "a?b", x FROM t -- why?` + "\nWHERE y = ?", `SELECT '?', "a?b", x FROM t -- why?` + "\nWHERE y = $1"},
		{`SELECT 'it''s ?' , ?`, `SELECT 'it''s ?' , $1`},
		{`state IN (SELECT value FROM json_each(?))`, `state IN (SELECT value FROM json_array_elements_text($1))`},
		{`instr(lower(subject), lower(?1)) > 0`, `strpos(lower((subject) COLLATE "C"), lower(($1) COLLATE "C")) > 0`},
		{`lower(template) IN (SELECT value FROM json_each(?4))`, `lower((template) COLLATE "C") IN (SELECT value FROM json_array_elements_text($4))`},
		{`SELECT my_lower(x), lowered, json_each_x(y)`, `SELECT my_lower(x), lowered, json_each_x(y)`},
		{"BEGIN $$ SELECT lower(?) $$; SELECT ?", "BEGIN $$ SELECT lower(?) $$; SELECT $1"},
		{`lower(coalesce(a, 'x)'))`, `lower((coalesce(a, 'x)')) COLLATE "C")`},
		{`x = ? AND lower(?) = ? AND y = ?`, `x = $1 AND lower(($2) COLLATE "C") = $3 AND y = $4`},
	}
	for _, tt := range tests {
		if got := rebind(tt.in); got != tt.want {
			t.Errorf("rebind(%q)\n got %q\nwant %q", tt.in, got, tt.want)
		}
	}
}
