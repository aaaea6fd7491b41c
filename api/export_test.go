package api

import (
	"bytes"
	"fmt"
	"strconv"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// ValidateResponse checks a real response body against what openapi.json
// documents for method, docPath (as written in the document) and status.
func ValidateResponse(method, docPath string, status int, body []byte) error {
	d, err := loadDoc(openapiDoc)
	if err != nil {
		return err
	}
	resp, r, err := d.resolve(pointer("paths", docPath, method, "responses", strconv.Itoa(status)))
	if err != nil {
		return fmt.Errorf("%s %s %d not documented: %w", method, docPath, status, err)
	}
	if _, ok := r["content"].(map[string]any)["application/json"]; !ok {
		return fmt.Errorf("%s %s %d: no application/json content documented", method, docPath, status)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return err
	}
	return d.validate(resp+pointer("content", "application/json", "schema"), v)
}
