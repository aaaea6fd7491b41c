package api

import (
	"encoding/json"
	"reflect"
	"strconv"
	"testing"
)

func TestMemberNameProblem(t *testing.T) {
	cases := []struct {
		body    string
		want    string
		problem memberProblem
	}{
		{`{"Subject":"CN=x","KeyType":"ECC"}`, "", memberOK},
		{`{"Subject":"CN=x","Subject":"CN=y"}`, "Subject", memberDuplicate},
		{`{"Subject":"CN=x","subject":"CN=y"}`, "subject", memberDuplicate},
		{`{"SANs":{"dns":["a"],"DNS":["b"]}}`, "SANs.DNS", memberDuplicate},
		{`{"SANs":{"dns":["a"]},"ip4":["x"],"SANs":{}}`, "SANs", memberDuplicate},
		{`{"a":{"b":1},"b":2}`, "", memberOK},
		{`{"a":[{"x":1},{"x":2}]}`, "", memberOK},
		{`{"a":[{"x":1,"x":2}]}`, "a.x", memberDuplicate},
		{`{"a":"b","c":["a","a"]}`, "", memberOK},
		{`{"a":1,"b":{"c":{"d":1,"e":2}},"a":3}`, "a", memberDuplicate},
		{`{"Subject":`, "", memberOK}, // malformed: left to the decoder
		// encoding/json binds U+017F (long s) to S and U+212A (Kelvin)
		// to K: such names are refused, duplicated or not, escaped or not.
		{`{"Subject":"CN=a","ſubject":"CN=evil"}`, "ſubject", memberDisguised},
		{`{"ſubject":"CN=evil"}`, "ſubject", memberDisguised},
		{`{"Subject":"CN=a","\u017fubject":"CN=evil"}`, "ſubject", memberDisguised},
		{`{"\u212AeyType":"RSA"}`, "\u212AeyType", memberDisguised},
		{`{"SANs":{"dnſ":["evil"]}}`, "SANs.dnſ", memberDisguised},
		// Other non-ASCII names fold as the decoder folds them.
		{`{"Größe":1,"GRÖSSE":2}`, "", memberOK},
		{`{"größe":1,"GRÖßE":2}`, "GRÖßE", memberDuplicate},
		{`{"σ":1,"Σ":2}`, "Σ", memberDuplicate},
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			if got, problem := memberNameProblem([]byte(tc.body)); got != tc.want || problem != tc.problem {
				t.Errorf("memberNameProblem = %q, %d; want %q, %d", got, problem, tc.want, tc.problem)
			}
		})
	}
}

// foldName agrees with the decoder: every pair it folds together binds to
// the same field, every pair it keeps apart does not.
func TestFoldNameMatchesDecoder(t *testing.T) {
	for _, pair := range [][2]string{
		{"Subject", "ſubject"}, {"KeyType", "\u212AeyType"}, {"σ", "ς"}, {"größe", "GRÖSSE"}, {"Ǆ", "ǆ"}, {"İ", "i"},
	} {
		same := foldName(pair[0]) == foldName(pair[1])
		if same != decoderMatches(t, pair[0], pair[1]) {
			t.Errorf("%q and %q: foldName says same=%v, the decoder disagrees", pair[0], pair[1], same)
		}
	}
}

// decoderMatches reports whether encoding/json binds member name to a
// field tagged field.
func decoderMatches(t *testing.T, field, name string) bool {
	t.Helper()
	typ := reflect.StructOf([]reflect.StructField{{Name: "F", Type: reflect.TypeFor[string](), Tag: reflect.StructTag(`json:"` + field + `"`)}})
	v := reflect.New(typ)
	if err := json.Unmarshal([]byte(`{`+strconv.Quote(name)+`:"x"}`), v.Interface()); err != nil {
		t.Fatal(err)
	}
	return v.Elem().Field(0).String() == "x"
}
