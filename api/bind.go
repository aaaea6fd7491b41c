package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/labstack/echo/v4"
)

// MaxBodyBytes is the largest request body accepted; a Generate request is
// a few hundred bytes, so anything near this is a mistake or an attack.
const MaxBodyBytes = 64 << 10

// jsonMediaType reports whether a Content-Type is one ASP.NET's JSON input
// formatter (and so Keyfactor) accepts.
func jsonMediaType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return false
	}
	switch {
	case mt == "application/json", mt == "text/json", mt == "application/json-patch+json":
		return true
	case strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return true
	}
	return false
}

// bindJSON reads the body (bounded), checks it is UTF-8 JSON of one object
// and decodes it into v, translating decoder errors into messages that name
// the field.
func (s *Server) bindJSON(c echo.Context, v any) error {
	return s.bindJSONAs(c, v, '{', "a JSON object")
}

// bindJSONArray is bindJSON for a body that is one JSON array.
func (s *Server) bindJSONArray(c echo.Context, v any) error {
	return s.bindJSONAs(c, v, '[', "a JSON array")
}

func (s *Server) bindJSONAs(c echo.Context, v any, open byte, what string) error {
	r := c.Request()
	if !jsonMediaType(r.Header.Get(echo.HeaderContentType)) {
		return &Error{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMedia,
			Msg: "Content-Type must be application/json (or text/json, application/*+json)"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.Response(), r.Body, MaxBodyBytes))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: CodeBodyTooLarge,
				Msg: fmt.Sprintf("request body is larger than %d bytes", MaxBodyBytes)}
		}
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "could not read the request body"}
	}
	if !utf8.Valid(body) {
		// encoding/json would silently turn bad bytes into U+FFFD and the
		// CSR would carry a subject the client never sent.
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body is not valid UTF-8"}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body is empty; " + what + " is required"}
	}
	if trimmed[0] != open {
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body must be " + what}
	}
	switch name, problem := memberNameProblem(trimmed); problem {
	case memberDuplicate:
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody,
			Msg: fmt.Sprintf("request body names %s more than once (names match case-insensitively)", strconv.QuoteToASCII(name))}
	case memberDisguised:
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody,
			Msg: fmt.Sprintf("request body member name %s spells an ASCII letter with another character; write member names in ASCII", strconv.QuoteToASCII(name))}
	}
	dec := json.NewDecoder(bytes.NewReader(trimmed))
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body has data after the JSON " + what[len("a JSON "):]}
	}
	return nil
}

func decodeError(err error) error {
	var (
		syn *json.SyntaxError
		typ *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "body"
		}
		return badField("%s must be %s, not a JSON %s", field, describeType(typ.Type.String()), typ.Value)
	case errors.As(err, &syn):
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody,
			Msg: fmt.Sprintf("request body is not valid JSON at byte %d: %s", syn.Offset, syn.Error())}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body is truncated JSON"}
	}
	return &Error{Status: http.StatusBadRequest, Code: CodeMalformedBody, Msg: "request body is not valid JSON"}
}

func describeType(goType string) string {
	switch goType {
	case "string":
		return "a string"
	case "int", "*int":
		return "an integer"
	case "[]string":
		return "an array of strings"
	case "map[string][]string":
		return "an object of string arrays"
	}
	return "of type " + goType
}
