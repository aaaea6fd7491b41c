package api

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// ValidateResponse checks a real response body against what openapi.json
// documents for method, docPath (as written in the document) and status.
func ValidateResponse(method, docPath string, status int, body []byte) error {
	d, err := loadDoc(openapiDoc)
	if err != nil {
		return err
	}
	item, ok := d.root["paths"].(map[string]any)[docPath].(map[string]any)
	if !ok {
		return fmt.Errorf("%s not documented", docPath)
	}
	op, ok := item[method].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s not documented", method, docPath)
	}
	resp, ok := op["responses"].(map[string]any)[strconv.Itoa(status)]
	if !ok {
		return fmt.Errorf("%s %s: status %d not documented", method, docPath, status)
	}
	r, err := d.resolve(resp)
	if err != nil {
		return err
	}
	media, ok := r["content"].(map[string]any)["application/json"].(map[string]any)
	if !ok {
		return fmt.Errorf("%s %s %d: no application/json content documented", method, docPath, status)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return err
	}
	return d.validate(media["schema"], v, "body")
}
