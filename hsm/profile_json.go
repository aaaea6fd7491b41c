package hsm

import "encoding/json"

// profileJSON is a Profile as csrd records it (store.TokenProfile) and
// `csrctl token probe -recorded` shows it: names instead of numbers,
// errors as their text.
type profileJSON struct {
	Label        string `json:"label"`
	Serial       string `json:"serial"`
	Manufacturer string `json:"manufacturer"`
	Model        string `json:"model"`
	Hardware     string `json:"hardware"`
	Firmware     string `json:"firmware"`
	Library      string `json:"library"`
	// KeysPerLogin: 0 when the module frees loaded keys itself.
	KeysPerLogin  int             `json:"keys_per_login"`
	MaxSessions   uint            `json:"max_sessions"`    // 0: no cap stated
	MaxRwSessions uint            `json:"max_rw_sessions"` // 0: no cap stated
	Sealing       bool            `json:"sealing"`
	Keys          []keyJSON       `json:"keys"`
	Mechanisms    []mechanismJSON `json:"mechanisms"`
}

type mechanismJSON struct {
	Name       string   `json:"name"`
	MinKeySize uint     `json:"min_key_size,omitempty"`
	MaxKeySize uint     `json:"max_key_size,omitempty"`
	Flags      []string `json:"flags"`
}

type keyJSON struct {
	Type               string      `json:"type"`
	Offered            bool        `json:"offered"`
	Error              string      `json:"error,omitempty"`
	Trial              string      `json:"trial,omitempty"`
	Template           string      `json:"template,omitempty"`
	Omitted            []string    `json:"omitted,omitempty"`
	Usage              string      `json:"usage,omitempty"`
	SignOnly           bool        `json:"sign_only"`
	Signing            string      `json:"signing,omitempty"`
	Modifiable         bool        `json:"modifiable"`
	ModifiableEnforced bool        `json:"modifiable_enforced"`
	Refusals           []string    `json:"refusals,omitempty"`
	Sizes              []trialJSON `json:"sizes,omitempty"`
}

type trialJSON struct {
	Spec  string `json:"spec"`
	Error string `json:"error,omitempty"` // "": offered
}

// MarshalJSON writes the profile as csrd records it.
func (p *Profile) MarshalJSON() ([]byte, error) {
	out := profileJSON{
		Label: p.Label, Serial: p.Serial, Manufacturer: p.Manufacturer, Model: p.Model, Hardware: p.Hardware, Firmware: p.Firmware,
		Library: p.Library, KeysPerLogin: p.KeysPerLogin,
		MaxSessions: p.MaxSessions, MaxRwSessions: p.MaxRwSessions, Sealing: p.Sealing,
		Keys: []keyJSON{}, Mechanisms: []mechanismJSON{},
	}
	for _, k := range p.Keys {
		out.Keys = append(out.Keys, keyOf(k))
	}
	for _, m := range p.Mechanisms {
		out.Mechanisms = append(out.Mechanisms, mechanismJSON{Name: m.Name(), MinKeySize: m.MinKeySize, MaxKeySize: m.MaxKeySize, Flags: m.FlagNames()})
	}
	return json.Marshal(out)
}

func keyOf(k KeyProfile) keyJSON {
	out := keyJSON{Type: k.Type.String(), Offered: k.Usable(), Trial: k.Trial, Refusals: k.Refusals}
	if k.Err != nil {
		out.Error = k.Err.Error()
	}
	if k.Template != 0 {
		out.Template, out.Omitted = k.Template.String(), k.Template.omitted()
		out.Usage, out.SignOnly, out.Signing = k.Usage.String(), k.Usage.SignOnly(), k.Signing.String()
		out.Modifiable, out.ModifiableEnforced = k.Modifiable, k.ModifiableEnforced
	}
	for _, s := range k.Sizes {
		t := trialJSON{Spec: s.Spec}
		if s.Err != nil {
			t.Error = s.Err.Error()
		}
		out.Sizes = append(out.Sizes, t)
	}
	return out
}
