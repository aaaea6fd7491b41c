package store

import (
	"strconv"
	"strings"
	"sync"
)

// The store's SQL is written once, in the subset SQLite and PostgreSQL
// share, with SQLite's placeholders. For PostgreSQL, rebind rewrites each
// statement as it reaches the driver (see pgConn), outside string literals,
// quoted identifiers and comments:
//
//   - placeholders: ?NNN becomes $NNN, and each bare ? the next $n;
//   - json_each(x), SQLite's table of a JSON array's elements, becomes
//     json_array_elements_text(x), whose column is also named value;
//   - instr(a, b) becomes strpos(a, b) (same arguments, same result);
//   - lower(x) becomes lower((x) COLLATE "C"): PostgreSQL lowers letters by
//     the database's locale, SQLite only ASCII ones, and csrd compares with
//     ASCII folding (see asciiLower).
//
// Anything else that differs (the audit sequence, pragmas, backups) is not
// rewritten: the dialect says it explicitly (dialect.go).
func rebind(query string) string {
	if v, ok := rebound.Load(query); ok {
		return v.(string)
	}
	out := rebindUncached(query)
	rebound.Store(query, out)
	return out
}

// rebound caches rebind: the statements are a fixed set of constants.
var rebound sync.Map

func rebindUncached(q string) string {
	r := rebinder{q: q}
	r.b.Grow(len(q) + 16)
	r.run()
	return r.b.String()
}

// rebinder rewrites q into b, one token at a time.
type rebinder struct {
	q string
	i int // next byte of q
	n int // bare placeholders seen
	b strings.Builder
}

func (r *rebinder) run() {
	for r.i < len(r.q) {
		r.step()
	}
}

// step rewrites, or copies, the token at q[i].
func (r *rebinder) step() {
	q, i := r.q, r.i
	c := q[i]
	switch {
	case c == '\'' || c == '"':
		r.copyTo(quotedEnd(q, i))
	case strings.HasPrefix(q[i:], "$$"): // a dollar-quoted body
		r.copyTo(dollarQuotedEnd(q, i))
	case strings.HasPrefix(q[i:], "--"):
		r.copyTo(lineEnd(q, i))
	case c == '?':
		r.placeholder()
	case isIdentStart(c) && (i == 0 || !isIdentPart(q[i-1])):
		r.word()
	default:
		r.b.WriteByte(c)
		r.i++
	}
}

// copyTo copies q[i:j] unchanged.
func (r *rebinder) copyTo(j int) {
	r.b.WriteString(r.q[r.i:j])
	r.i = j
}

// placeholder rewrites ?NNN as $NNN and a bare ? as the next $n.
func (r *rebinder) placeholder() {
	q := r.q
	j := r.i + 1
	for j < len(q) && q[j] >= '0' && q[j] <= '9' {
		j++
	}
	if j > r.i+1 {
		r.b.WriteString("$" + q[r.i+1:j])
	} else {
		r.n++
		r.b.WriteString("$" + strconv.Itoa(r.n))
	}
	r.i = j
}

// word copies an identifier, renaming the SQLite functions PostgreSQL
// spells differently when it is called.
func (r *rebinder) word() {
	q := r.q
	j := r.i
	for j < len(q) && isIdentPart(q[j]) {
		j++
	}
	word := q[r.i:j]
	if j < len(q) && q[j] == '(' {
		switch strings.ToLower(word) {
		case "json_each":
			word = "json_array_elements_text"
		case "instr":
			word = "strpos"
		case "lower":
			if end := closingParen(q, j); end > 0 {
				r.lower(q[j+1 : end])
				r.i = end + 1
				return
			}
		}
	}
	r.b.WriteString(word)
	r.i = j
}

// lower writes lower((arg) COLLATE "C"), arg rewritten with the same
// placeholder count as the rest of the statement.
func (r *rebinder) lower(arg string) {
	sub := rebinder{q: arg, n: r.n}
	sub.run()
	r.n = sub.n
	r.b.WriteString(`lower((` + sub.b.String() + `) COLLATE "C")`)
}

// dollarQuotedEnd returns the index after the $$ ... $$ body opening at
// q[i] (the end of q if it is not closed).
func dollarQuotedEnd(q string, i int) int {
	j := strings.Index(q[i+2:], "$$")
	if j < 0 {
		return len(q)
	}
	return i + 2 + j + 2
}

// lineEnd returns the index of the newline ending the comment at q[i]
// (the end of q if there is none).
func lineEnd(q string, i int) int {
	j := strings.IndexByte(q[i:], '\n')
	if j < 0 {
		return len(q)
	}
	return i + j
}

// quotedEnd returns the index after the literal or identifier opening at
// q[i] (a doubled quote is an escaped one).
func quotedEnd(q string, i int) int {
	quote := q[i]
	for j := i + 1; j < len(q); j++ {
		if q[j] == quote {
			if j+1 < len(q) && q[j+1] == quote {
				j++
				continue
			}
			return j + 1
		}
	}
	return len(q)
}

// closingParen returns the index of the parenthesis closing the one at
// q[open], or -1.
func closingParen(q string, open int) int {
	depth := 0
	for i := open; i < len(q); i++ {
		switch q[i] {
		case '\'', '"':
			i = quotedEnd(q, i) - 1
		case '(':
			depth++
		case ')':
			if depth--; depth == 0 {
				return i
			}
		}
	}
	return -1
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

func isIdentPart(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' || c == '$' }
