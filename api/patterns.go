package api

import (
	"net/http"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/csrd/csrd/policy"
)

// PolicySource gives the policy in force; a reload may change it between
// two requests, never during one.
type PolicySource interface {
	Current() *policy.Engine
}

// KeyOffer says which key algorithms the HSM tokens can make (by their
// profiles: lifecycle.Service). A Generator that implements it narrows the
// algorithms the EnrollmentPatterns endpoints advertise to those: the
// policy may allow what the token cannot do.
type KeyOffer interface {
	Offers(alg policy.Algorithm, bits int, curve string) bool
}

// The EnrollmentPatterns endpoints answer in Keyfactor's field names
// (EnrollmentPatternsEnrollmentPatternResponse and friends in Keyfactor's
// SDK), built from the policy in force. Fields Keyfactor has and csrd does
// not model (roles, CAs, metadata) are left out; csrd's own additions
// (AllowSealedAlternativeKeys, MinimumRSAKeySize, MaxSANs) are extra
// members, which Keyfactor clients ignore.

// EnrollmentPatternResponse is one pattern.
type EnrollmentPatternResponse struct {
	ID                     int                      `json:"Id"`
	Name                   string                   `json:"Name"`
	Description            *string                  `json:"Description"`
	Template               *PatternTemplateResponse `json:"Template"`
	TemplateDefault        bool                     `json:"TemplateDefault"`
	AllowedEnrollmentTypes int                      `json:"AllowedEnrollmentTypes"`
	Regexes                []PatternRegexResponse   `json:"Regexes"`
	Defaults               []PatternDefaultResponse `json:"Defaults"`
	Policies               PatternPoliciesResponse  `json:"Policies"`
}

// PatternTemplateResponse is the template of a pattern. Id is the
// template's position in the policy file (csrd has no template database).
type PatternTemplateResponse struct {
	ID           int     `json:"Id"`
	CommonName   string  `json:"CommonName"`
	TemplateName string  `json:"TemplateName"`
	FriendlyName *string `json:"FriendlyName"`
	Oid          *string `json:"Oid"`
}

// PatternRegexResponse is one regex.
type PatternRegexResponse struct {
	SubjectPart   string  `json:"SubjectPart"`
	Regex         string  `json:"Regex"`
	Error         *string `json:"Error"`
	CaseSensitive bool    `json:"CaseSensitive"`
}

// PatternDefaultResponse is one subject default.
type PatternDefaultResponse struct {
	SubjectPart string `json:"SubjectPart"`
	Value       string `json:"Value"`
}

// PatternPoliciesResponse is a pattern's (or the system-wide) policies,
// effective values.
type PatternPoliciesResponse struct {
	// AllowKeyReuse is always false: every csrd key is new.
	AllowKeyReuse            bool                    `json:"AllowKeyReuse"`
	AllowWildcards           bool                    `json:"AllowWildcards"`
	RFCEnforcement           bool                    `json:"RFCEnforcement"`
	PrimaryKeyAlgorithms     []AlgorithmDataResponse `json:"PrimaryKeyAlgorithms"`
	AlternativeKeyAlgorithms []AlgorithmDataResponse `json:"AlternativeKeyAlgorithms"`
	// KeyInfo is the same primary key rules in the shape Keyfactor's v25
	// SDK reads (it drops PrimaryKeyAlgorithms): one entry per allowed
	// algorithm, named RSA, ECDSA, Ed25519 or Ed448.
	KeyInfo                    map[string]KeyInfoResponse `json:"KeyInfo"`
	AllowSealedAlternativeKeys bool                       `json:"AllowSealedAlternativeKeys"`
	MinimumRSAKeySize          int                        `json:"MinimumRSAKeySize"`
	MaxSANs                    int                        `json:"MaxSANs"`
}

// KeyInfoResponse is one algorithm of KeyInfo, with the SDK's snake-case
// member names; curves are OIDs, as Curve is sent.
type KeyInfoResponse struct {
	BitLengths []int    `json:"bit_lengths"`
	Curves     []string `json:"curves"`
}

// AlgorithmDataResponse is one allowed key algorithm: Name as KeyType is
// sent, BitLengths as KeyLength is sent, Curves as OIDs as Curve is sent.
type AlgorithmDataResponse struct {
	Name       string   `json:"Name"`
	BitLengths []int    `json:"BitLengths"`
	Curves     []string `json:"Curves"`
}

// PatternSettingsResponse is EnrollmentPatterns/Settings: the system-wide
// settings.
type PatternSettingsResponse struct {
	Regexes  []PatternRegexResponse   `json:"Regexes"`
	Defaults []PatternDefaultResponse `json:"Defaults"`
	Policies PatternPoliciesResponse  `json:"Policies"`
}

// maxPatternPage bounds ReturnLimit.
const maxPatternPage = 1000

func (s *Server) listPatterns(c echo.Context) error {
	page, err := queryInt(c, "PageReturned", 1)
	if err != nil {
		return err
	}
	limit, err := queryInt(c, "ReturnLimit", 50)
	if err != nil {
		return err
	}
	if limit > maxPatternPage {
		limit = maxPatternPage
	}
	e := s.policy.Current()
	all := e.Patterns()
	out := []EnrollmentPatternResponse{}
	templates := e.Templates()
	for i := (page - 1) * limit; i < len(all) && i < page*limit; i++ {
		out = append(out, s.offered(patternResponse(all[i], templates)))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Server) getPattern(c echo.Context) error {
	id, err := strconv.Atoi(c.Param("id"))
	if err != nil || id < 1 {
		return badField("enrollment pattern id %q is not a positive integer", c.Param("id"))
	}
	e := s.policy.Current()
	p, ok := e.Pattern(id)
	if !ok {
		return &Error{Status: http.StatusNotFound, Code: CodeNotFound, Msg: "no enrollment pattern with Id " + strconv.Itoa(id)}
	}
	return c.JSON(http.StatusOK, s.offered(patternResponse(p, e.Templates())))
}

func (s *Server) patternSettings(c echo.Context) error {
	st := s.policy.Current().Settings()
	return c.JSON(http.StatusOK, PatternSettingsResponse{
		Regexes: regexResponses(st.Regexes), Defaults: defaultResponses(st.Defaults), Policies: s.offeredPolicies(policiesResponse(st.Policies)),
	})
}

// queryInt reads a positive integer query parameter (names matched
// case-insensitively, as ASP.NET binds them).
func queryInt(c echo.Context, name string, dflt int) (int, error) {
	for k, vs := range c.QueryParams() {
		if len(vs) == 0 || !equalFold(k, name) {
			continue
		}
		n, err := strconv.Atoi(vs[0])
		if err != nil || n < 1 {
			return 0, badField("%s %q is not a positive integer", name, vs[0])
		}
		return n, nil
	}
	return dflt, nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i]|0x20, b[i]|0x20
		if x != y {
			return false
		}
	}
	return true
}

func patternResponse(p policy.PatternView, templates []policy.TemplateView) EnrollmentPatternResponse {
	r := EnrollmentPatternResponse{
		ID: p.ID, Name: p.Name, Description: nullable(p.Description), TemplateDefault: p.TemplateDefault,
		AllowedEnrollmentTypes: p.AllowedEnrollmentTypes,
		Regexes:                regexResponses(p.Regexes), Defaults: defaultResponses(p.Defaults), Policies: policiesResponse(p.Policies),
	}
	if t := p.Template; t != nil {
		tr := &PatternTemplateResponse{CommonName: t.Name, TemplateName: t.Name, FriendlyName: nullable(t.FriendlyName), Oid: nullable(t.OID)}
		if t.FriendlyName != "" {
			tr.TemplateName = t.FriendlyName
		}
		for i, x := range templates {
			if x.Name == t.Name {
				tr.ID = i + 1
			}
		}
		r.Template = tr
	}
	return r
}

// offered narrows a pattern's advertised algorithms to what the tokens
// can make (KeyOffer).
func (s *Server) offered(r EnrollmentPatternResponse) EnrollmentPatternResponse {
	r.Policies = s.offeredPolicies(r.Policies)
	return r
}

func (s *Server) offeredPolicies(p PatternPoliciesResponse) PatternPoliciesResponse {
	ko, ok := s.gen.(KeyOffer)
	if !ok {
		return p
	}
	p.PrimaryKeyAlgorithms = offeredAlgorithms(ko, p.PrimaryKeyAlgorithms)
	p.AlternativeKeyAlgorithms = offeredAlgorithms(ko, p.AlternativeKeyAlgorithms)
	p.KeyInfo = keyInfo(p.PrimaryKeyAlgorithms)
	return p
}

// offeredAlgorithms keeps the sizes and curves ko offers, and the
// algorithms with any left.
func offeredAlgorithms(ko KeyOffer, algs []AlgorithmDataResponse) []AlgorithmDataResponse {
	out := []AlgorithmDataResponse{}
	for _, a := range algs {
		kept := AlgorithmDataResponse{Name: a.Name, BitLengths: []int{}, Curves: []string{}}
		alg := policy.Algorithm(a.Name)
		switch {
		case alg == policy.ECC:
			for i, oid := range a.Curves {
				if ko.Offers(alg, a.BitLengths[i], policy.CurveName(oid)) {
					kept.Curves = append(kept.Curves, oid)
					kept.BitLengths = append(kept.BitLengths, a.BitLengths[i])
				}
			}
		case alg == policy.RSA:
			for _, b := range a.BitLengths {
				if ko.Offers(alg, b, "") {
					kept.BitLengths = append(kept.BitLengths, b)
				}
			}
		case ko.Offers(alg, policy.KeySize(alg), ""):
			kept.BitLengths = a.BitLengths
		}
		if len(kept.BitLengths) > 0 {
			out = append(out, kept)
		}
	}
	return out
}

func policiesResponse(e policy.Effective) PatternPoliciesResponse {
	return PatternPoliciesResponse{
		AllowWildcards: e.AllowWildcards, RFCEnforcement: e.RFCEnforcement,
		PrimaryKeyAlgorithms:       algorithmResponses(e.PrimaryKeyAlgorithms),
		AlternativeKeyAlgorithms:   algorithmResponses(e.AlternativeKeyAlgorithms),
		KeyInfo:                    keyInfo(algorithmResponses(e.PrimaryKeyAlgorithms)),
		AllowSealedAlternativeKeys: e.AllowSealedAlternativeKeys,
		MinimumRSAKeySize:          e.MinimumRSAKeySize,
		MaxSANs:                    e.MaxSANs,
	}
}

func algorithmResponses(rules []policy.AlgorithmRule) []AlgorithmDataResponse {
	out := []AlgorithmDataResponse{}
	for _, r := range rules {
		a := AlgorithmDataResponse{Name: string(r.KeyType), BitLengths: []int{}, Curves: []string{}}
		switch r.KeyType {
		case policy.RSA:
			a.BitLengths = append(a.BitLengths, r.BitLengths...)
		case policy.ECC:
			for _, c := range r.Curves {
				a.Curves = append(a.Curves, policy.CurveOID(c))
				a.BitLengths = append(a.BitLengths, policy.CurveBits(c))
			}
		default:
			a.BitLengths = append(a.BitLengths, policy.KeySize(r.KeyType))
		}
		out = append(out, a)
	}
	return out
}

// keyInfoNames are KeyInfo's names for csrd's key types.
var keyInfoNames = map[policy.Algorithm]string{policy.RSA: "RSA", policy.ECC: "ECDSA", policy.Ed25519: "Ed25519", policy.Ed448: "Ed448"}

// keyInfo is KeyInfo for the primary algorithms algs: made from the
// advertised list, it offers exactly what that list offers (the tokens'
// narrowing included).
func keyInfo(algs []AlgorithmDataResponse) map[string]KeyInfoResponse {
	out := map[string]KeyInfoResponse{}
	for _, a := range algs {
		if name, ok := keyInfoNames[policy.Algorithm(a.Name)]; ok {
			out[name] = KeyInfoResponse{BitLengths: a.BitLengths, Curves: a.Curves}
		}
	}
	return out
}

func regexResponses(rs []policy.Regex) []PatternRegexResponse {
	out := []PatternRegexResponse{}
	for _, r := range rs {
		out = append(out, PatternRegexResponse{SubjectPart: r.SubjectPart, Regex: r.Regex, Error: nullable(r.Error),
			CaseSensitive: r.CaseSensitive == nil || *r.CaseSensitive})
	}
	return out
}

func defaultResponses(ds []policy.SubjectDefault) []PatternDefaultResponse {
	out := []PatternDefaultResponse{}
	for _, d := range ds {
		out = append(out, PatternDefaultResponse{SubjectPart: d.SubjectPart, Value: d.Value})
	}
	return out
}

// nullable is Keyfactor's NullableString: null rather than "".
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
