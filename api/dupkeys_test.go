package api

import "testing"

func TestDuplicateMember(t *testing.T) {
	cases := []struct {
		body string
		want string
	}{
		{`{"Subject":"CN=x","KeyType":"ECC"}`, ""},
		{`{"Subject":"CN=x","Subject":"CN=y"}`, "Subject"},
		{`{"Subject":"CN=x","subject":"CN=y"}`, "subject"},
		{`{"SANs":{"dns":["a"],"DNS":["b"]}}`, "SANs.DNS"},
		{`{"SANs":{"dns":["a"]},"ip4":["x"],"SANs":{}}`, "SANs"},
		{`{"a":{"b":1},"b":2}`, ""},
		{`{"a":[{"x":1},{"x":2}]}`, ""},
		{`{"a":[{"x":1,"x":2}]}`, "a.x"},
		{`{"a":"b","c":["a","a"]}`, ""},
		{`{"a":1,"b":{"c":{"d":1,"e":2}},"a":3}`, "a"},
		{`{"Subject":`, ""}, // malformed: left to the decoder
	}
	for _, tc := range cases {
		t.Run(tc.body, func(t *testing.T) {
			if got := duplicateMember([]byte(tc.body)); got != tc.want {
				t.Errorf("duplicateMember = %q, want %q", got, tc.want)
			}
		})
	}
}
