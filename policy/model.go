package policy

// This file is the policy file's model as operators write it (YAML, with
// Keyfactor's field names). Parse turns it into an Engine; nothing here is
// used to decide directly, so the two can evolve separately.

// File is one policy file.
type File struct {
	// Settings are the system-wide settings every pattern starts from.
	Settings Settings `yaml:"Settings"`
	// Templates are the certificate templates clients may name, with what
	// the CA behind each supports.
	Templates []Template `yaml:"Templates"`
	// EnrollmentPatterns decide requests; at least one is required.
	EnrollmentPatterns []Pattern `yaml:"EnrollmentPatterns"`
	// DefaultEnrollmentPatternID decides requests that name neither an
	// enrollment pattern nor a template; 0 means such requests are refused.
	DefaultEnrollmentPatternID int `yaml:"DefaultEnrollmentPatternId"`
}

// Settings are Keyfactor's system-wide enrollment pattern settings.
type Settings struct {
	Policies Policies         `yaml:"Policies"`
	Regexes  []Regex          `yaml:"Regexes"`
	Defaults []SubjectDefault `yaml:"Defaults"`
}

// Policies are the rules of the system-wide settings or of one pattern. A
// nil field is "not set": in a pattern it inherits the system-wide value,
// in the system-wide settings it takes the built-in default.
type Policies struct {
	// AllowWildcards allows "*." as the leftmost label of a DNS SAN or CN.
	AllowWildcards *bool `yaml:"AllowWildcards"`
	// RFCEnforcement requires at least one DNS SAN, and a CN that is a host
	// name to appear among the DNS SANs (RFC 2818, CA/B Forum).
	RFCEnforcement *bool `yaml:"RFCEnforcement"`
	// AllowSealedAlternativeKeys allows an alternative (ML-DSA) key whose
	// seed is kept sealed by the token, for tokens that cannot hold ML-DSA
	// keys themselves.
	AllowSealedAlternativeKeys *bool `yaml:"AllowSealedAlternativeKeys"`
	// MinimumRSAKeySize is the smallest RSA modulus allowed; never below
	// 2048.
	MinimumRSAKeySize *int `yaml:"MinimumRSAKeySize"`
	// MaxSANs bounds the number of subject alternative names; 0 is
	// csrd's own bound (1000).
	MaxSANs *int `yaml:"MaxSANs"`
	// PrimaryKeyAlgorithms and AlternativeKeyAlgorithms list what may be
	// generated. A pattern's lists narrow the system-wide ones (the
	// allowed set is the intersection); an empty alternative list allows
	// no alternative key.
	PrimaryKeyAlgorithms     []AlgorithmRule `yaml:"PrimaryKeyAlgorithms"`
	AlternativeKeyAlgorithms []AlgorithmRule `yaml:"AlternativeKeyAlgorithms"`
}

// AlgorithmRule is one allowed key algorithm with its allowed sizes (RSA;
// for ECC 256/384/521 name curves) or curves (ECC, by name or OID).
// Keyfactor's policy model uses the same shape.
type AlgorithmRule struct {
	KeyType Algorithm `yaml:"KeyType" json:"KeyType"`
	// Name is accepted for KeyType in files, as Keyfactor's API spells it
	// in responses; canonical rules carry KeyType only.
	Name       Algorithm `yaml:"Name" json:"-"`
	BitLengths []int     `yaml:"BitLengths" json:"BitLengths,omitempty"`
	Curves     []string  `yaml:"Curves" json:"Curves,omitempty"`
}

// Template is a certificate template as clients name it in Template.
type Template struct {
	// Name is the template's short name, the Template string clients send
	// (matched case-insensitively).
	Name string `yaml:"Name"`
	// OID is the template's object identifier; clients may send it instead
	// of the name.
	OID string `yaml:"OID"`
	// FriendlyName is shown in listings only.
	FriendlyName string `yaml:"FriendlyName"`
	// PrimaryKeyAlgorithms and AlternativeKeyAlgorithms are what the CA
	// behind the template supports; nil means no restriction.
	PrimaryKeyAlgorithms     []AlgorithmRule `yaml:"PrimaryKeyAlgorithms"`
	AlternativeKeyAlgorithms []AlgorithmRule `yaml:"AlternativeKeyAlgorithms"`
}

// Pattern is one enrollment pattern.
type Pattern struct {
	ID          int    `yaml:"Id"`
	Name        string `yaml:"Name"`
	Description string `yaml:"Description"`
	// Template names the template requests through this pattern are for;
	// empty for a pattern that is not tied to one.
	Template string `yaml:"Template"`
	// TemplateDefault makes this the pattern a request naming only the
	// template gets; one per template.
	TemplateDefault bool `yaml:"TemplateDefault"`
	// AllowedEnrollmentTypes is Keyfactor's bitmask: 1 PFX, 2 CSR
	// enrollment, 4 CSR Generation (required for Generate). Required.
	AllowedEnrollmentTypes *int             `yaml:"AllowedEnrollmentTypes"`
	Policies               Policies         `yaml:"Policies"`
	Regexes                []Regex          `yaml:"Regexes"`
	Defaults               []SubjectDefault `yaml:"Defaults"`
}

// Enrollment type bits of AllowedEnrollmentTypes.
const (
	EnrollPFX           = 1
	EnrollCSR           = 2
	EnrollCSRGeneration = 4
)

// Regex constrains one subject attribute (CN, O, E, ...) or one SAN type
// (dns, ip4, ip6, ip, uri, rfc822, ms_ntprincipalname, registeredid): every
// value of it must match. Go (RE2) syntax; not anchored unless written so.
type Regex struct {
	SubjectPart string `yaml:"SubjectPart"`
	Regex       string `yaml:"Regex"`
	// Error is shown to the client instead of the generic reason.
	Error string `yaml:"Error"`
	// CaseSensitive defaults to true.
	CaseSensitive *bool `yaml:"CaseSensitive"`
}

// SubjectDefault fills in a subject attribute a request lacks.
type SubjectDefault struct {
	SubjectPart string `yaml:"SubjectPart"`
	Value       string `yaml:"Value"`
}
