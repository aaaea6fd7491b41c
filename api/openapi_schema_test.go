package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaDoc is openapi.json as the tests read it: plain JSON to find an
// operation's parts, and compiled by a JSON Schema 2020-12 validator to
// check values against the schemas it documents. OpenAPI 3.1 schema objects
// are JSON Schema 2020-12 (the keywords OpenAPI adds, such as example, are
// annotations), so the validator reads the document as it is, $refs
// included.
type schemaDoc struct {
	root     map[string]any
	compiler *jsonschema.Compiler
}

// docURL names the document inside the compiler; nothing is fetched.
const docURL = "urn:csrd:openapi.json"

func loadDoc(b []byte) (*schemaDoc, error) {
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, err
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource(docURL, doc); err != nil {
		return nil, err
	}
	return &schemaDoc{root: root, compiler: c}, nil
}

// pointer is the JSON pointer (RFC 6901) of the member named by tokens.
func pointer(tokens ...string) string {
	var b strings.Builder
	for _, t := range tokens {
		b.WriteString("/" + strings.ReplaceAll(strings.ReplaceAll(t, "~", "~0"), "/", "~1"))
	}
	return b.String()
}

// at returns the value at ptr.
func (d *schemaDoc) at(ptr string) (any, error) {
	var cur any = d.root
	for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		var next any
		switch v := cur.(type) {
		case map[string]any:
			next = v[tok]
		case []any:
			var i int
			if _, err := fmt.Sscan(tok, &i); err == nil && i >= 0 && i < len(v) {
				next = v[i]
			}
		}
		if next == nil {
			return nil, fmt.Errorf("%s does not resolve", ptr)
		}
		cur = next
	}
	return cur, nil
}

// resolve returns the object at ptr, following local $refs
// ("#/components/responses/X"), and the pointer it ends at.
func (d *schemaDoc) resolve(ptr string) (string, map[string]any, error) {
	for range 16 {
		v, err := d.at(ptr)
		if err != nil {
			return "", nil, err
		}
		m, ok := v.(map[string]any)
		if !ok {
			return "", nil, fmt.Errorf("%s is not an object", ptr)
		}
		ref, ok := m["$ref"].(string)
		if !ok {
			return ptr, m, nil
		}
		if !strings.HasPrefix(ref, "#/") {
			return "", nil, fmt.Errorf("%s: $ref %s is not local", ptr, ref)
		}
		ptr = strings.TrimPrefix(ref, "#")
	}
	return "", nil, fmt.Errorf("%s: $ref loop", ptr)
}

// schema compiles the schema at ptr, and with it every schema it refers to.
func (d *schemaDoc) schema(ptr string) (*jsonschema.Schema, error) {
	frag := strings.Split(ptr, "/")
	for i := range frag {
		frag[i] = url.PathEscape(frag[i])
	}
	return d.compiler.Compile(docURL + "#" + strings.Join(frag, "/"))
}

// validate checks value (decoded JSON) against the schema at ptr.
func (d *schemaDoc) validate(ptr string, value any) error {
	s, err := d.schema(ptr)
	if err != nil {
		return err
	}
	return s.Validate(value)
}
