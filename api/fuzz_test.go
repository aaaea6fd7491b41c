package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/rs/zerolog"

	"github.com/csrd/csrd/csr"
	"github.com/csrd/csrd/policy"
)

// FuzzGenerateDecode drives the Generate request decoder and validation
// with arbitrary bodies, then the parsers the use case runs next. Nothing
// may panic, and every refusal must be one of the typed errors the error
// mapper turns into a 4xx — an untyped error would become a 500.
func FuzzGenerateDecode(f *testing.F) {
	for _, seed := range []string{
		`{"Subject":"CN=websrvr14.keyexample.com,OU=IT,O=\"Key Example, Inc.\",L=Independence,ST=OH,C=US","KeyType":"ECC","KeyLength":256,"SANs":{"dns":["websrvr14.keyexample.com"],"ip4":["192.168.12.14"]}}`,
		`{"subject":"CN=a+UID=b","keyType":"rsa","keyLength":2048,"saNs":{"upn":["u@x"]}}`,
		`{"Subject":"CN=x","KeyType":"ECC","Curve":"1.3.132.0.34","AlternativeKeyType":"ML-DSA-65"}`,
		`{"Subject":"CN=x","Subject":"CN=y"}`,
		`{"Subject":1}`,
		`[]`,
		``,
	} {
		f.Add([]byte(seed))
	}
	s := New(Options{BasePath: "/KeyfactorAPI", Log: zerolog.Nop()})
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, "/keyfactorapi/csrgeneration/generate", strings.NewReader(string(body)))
		req.Header.Set(echo.HeaderContentType, "application/json")
		c := s.e.NewContext(req, httptest.NewRecorder())
		var gr GenerateRequest
		err := s.bindJSON(c, &gr)
		if err == nil {
			err = gr.Validate()
		}
		if err != nil {
			var ae *Error
			if !errors.As(err, &ae) || ae.Status < 400 || ae.Status >= 500 {
				t.Fatalf("decoder error is not a 4xx api.Error: %v", err)
			}
			return
		}
		uc := gr.toUseCase()
		if _, err := csr.ParseDN(uc.Subject); err != nil && classify(err).status != http.StatusBadRequest {
			t.Fatalf("DN error maps to %d: %v", classify(err).status, err)
		}
		if _, err := csr.ParseSANs(uc.SANs); err != nil && classify(err).status != http.StatusBadRequest {
			t.Fatalf("SAN error maps to %d: %v", classify(err).status, err)
		}
		if _, err := policy.Default().Decide(policy.Request{Key: uc.Key}); err != nil && classify(err).status != http.StatusBadRequest {
			t.Fatalf("policy error maps to %d: %v", classify(err).status, err)
		}
	})
}
