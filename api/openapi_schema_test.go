package api

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"
)

// A small validator for the JSON Schema subset openapi.json uses. Keywords
// it does not know are an error, so the document cannot rely on a rule this
// test would silently skip.

// annotations carry no validation rule.
var annotations = map[string]bool{"description": true, "example": true, "title": true, "format": true, "deprecated": true}

type schemaDoc struct {
	root map[string]any
}

func loadDoc(b []byte) (*schemaDoc, error) {
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		return nil, err
	}
	return &schemaDoc{root: root}, nil
}

// resolve follows a local "$ref" ("#/components/schemas/X").
func (d *schemaDoc) resolve(v any) (map[string]any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not an object: %v", v)
	}
	for range 16 {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, nil
		}
		var cur any = d.root
		for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			next, ok := cur.(map[string]any)[part]
			if !ok {
				return nil, fmt.Errorf("$ref %s does not resolve", ref)
			}
			cur = next
		}
		if m, ok = cur.(map[string]any); !ok {
			return nil, fmt.Errorf("$ref %s is not an object", ref)
		}
	}
	return nil, fmt.Errorf("$ref loop")
}

// validate checks value (decoded JSON) against schema at path.
func (d *schemaDoc) validate(schema any, value any, path string) error {
	s, err := d.resolve(schema)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	keys := make([]string, 0, len(s))
	for k := range s {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		kw := s[k]
		if annotations[k] {
			continue
		}
		var err error
		switch k {
		case "type":
			err = checkType(kw, value)
		case "enum":
			ok := false
			for _, e := range kw.([]any) {
				ok = ok || fmt.Sprint(e) == fmt.Sprint(value)
			}
			if !ok {
				err = fmt.Errorf("%v is not one of %v", value, kw)
			}
		case "required":
			obj, isObj := value.(map[string]any)
			for _, r := range kw.([]any) {
				if _, ok := obj[r.(string)]; isObj && !ok {
					err = fmt.Errorf("required member %s missing", r)
				}
			}
		case "properties":
			if obj, ok := value.(map[string]any); ok {
				for name, sub := range kw.(map[string]any) {
					if v, ok := obj[name]; ok {
						if err := d.validate(sub, v, path+"."+name); err != nil {
							return err
						}
					}
				}
			}
		case "additionalProperties":
			obj, ok := value.(map[string]any)
			if !ok {
				break
			}
			props, _ := s["properties"].(map[string]any)
			for name, v := range obj {
				if _, known := props[name]; known {
					continue
				}
				switch ap := kw.(type) {
				case bool:
					if !ap {
						err = fmt.Errorf("member %s not allowed", name)
					}
				default:
					if e := d.validate(ap, v, path+"."+name); e != nil {
						return e
					}
				}
			}
		case "items":
			if arr, ok := value.([]any); ok {
				for i, v := range arr {
					if err := d.validate(kw, v, fmt.Sprintf("%s[%d]", path, i)); err != nil {
						return err
					}
				}
			}
		case "minLength":
			if str, ok := value.(string); ok && float64(len([]rune(str))) < kw.(float64) {
				err = fmt.Errorf("shorter than %v", kw)
			}
		case "pattern":
			if str, ok := value.(string); ok && !regexp.MustCompile(kw.(string)).MatchString(str) {
				err = fmt.Errorf("%q does not match %s", str, kw)
			}
		case "minimum":
			if n, ok := value.(float64); ok && n < kw.(float64) {
				err = fmt.Errorf("%v below minimum %v", n, kw)
			}
		case "maximum":
			if n, ok := value.(float64); ok && n > kw.(float64) {
				err = fmt.Errorf("%v above maximum %v", n, kw)
			}
		default:
			err = fmt.Errorf("schema keyword %q is not supported by the test validator", k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
	}
	return nil
}

func checkType(kw, value any) error {
	want := []string{}
	switch t := kw.(type) {
	case string:
		want = append(want, t)
	case []any:
		for _, x := range t {
			want = append(want, x.(string))
		}
	}
	for _, w := range want {
		switch v := value.(type) {
		case string:
			if w == "string" {
				return nil
			}
		case float64:
			if w == "number" || w == "integer" && v == math.Trunc(v) {
				return nil
			}
		case bool:
			if w == "boolean" {
				return nil
			}
		case nil:
			if w == "null" {
				return nil
			}
		case []any:
			if w == "array" {
				return nil
			}
		case map[string]any:
			if w == "object" {
				return nil
			}
		}
	}
	return fmt.Errorf("%v is not of type %v", value, kw)
}
