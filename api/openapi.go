package api

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"strings"
	"sync"

	"github.com/labstack/echo/v4"
)

// openapiDoc is the OpenAPI 3 description of every route csrd serves,
// written with the default base path /KeyfactorAPI. TestOpenAPIMatchesRoutes
// keeps it and the registered routes in step, both ways.
//
//go:embed openapi.json
var openapiDoc []byte

// docBasePath is the base path openapi.json is written with.
const docBasePath = "/KeyfactorAPI"

var openapiOnce struct {
	sync.Mutex
	byBase map[string][]byte
}

// openAPIFor returns the document with paths under base instead of
// /KeyfactorAPI.
func openAPIFor(base string) ([]byte, error) {
	openapiOnce.Lock()
	defer openapiOnce.Unlock()
	if b, ok := openapiOnce.byBase[base]; ok {
		return b, nil
	}
	var doc map[string]any
	if err := json.Unmarshal(openapiDoc, &doc); err != nil {
		return nil, err
	}
	if paths, ok := doc["paths"].(map[string]any); ok && base != docBasePath {
		out := make(map[string]any, len(paths))
		for p, v := range paths {
			if rest, ok := strings.CutPrefix(p, docBasePath+"/"); ok {
				p = base + "/" + rest
			}
			out[p] = v
		}
		doc["paths"] = out
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return nil, err
	}
	if openapiOnce.byBase == nil {
		openapiOnce.byBase = map[string][]byte{}
	}
	openapiOnce.byBase[base] = b
	return b, nil
}

// serveOpenAPI answers {base}/openapi.json. It needs no credentials: the
// document says nothing the README does not.
func (s *Server) serveOpenAPI(c echo.Context) error {
	b, err := openAPIFor(s.basePath)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, "application/json", b)
}
