package policy

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Outcome is the verdict of an evaluation.
type Outcome uint8

const (
	Allow     Outcome = iota + 1 // forward the request
	Challenge                    // send the person to the portal for what is missing
	Deny                         // 403
)

// Reason says, in a typed way, why a decision is not Allow: what the portal
// must ask for.
type Reason uint8

const (
	ReasonNone         Reason = iota
	ReasonSignIn              // no first factor yet (or identity needed to match subjects)
	ReasonSecondFactor        // an acceptable second factor is missing
	ReasonStale               // the second factor is older than max_age (step-up)
	ReasonWebAuthn            // a WebAuthn proof exists but not of the demanded kind
	ReasonDenied              // a deny rule or default
)

// String gives the outcome's JSON/text name: allow, challenge or deny.
func (o Outcome) String() string {
	switch o {
	case Allow:
		return "allow"
	case Challenge:
		return "challenge"
	case Deny:
		return "deny"
	}
	return fmt.Sprintf("outcome(%d)", uint8(o))
}

// MarshalText writes the outcome by name so that JSON stays readable.
func (o Outcome) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (o *Outcome) UnmarshalText(b []byte) error {
	for _, v := range []Outcome{Allow, Challenge, Deny} {
		if v.String() == string(b) {
			*o = v
			return nil
		}
	}
	return fmt.Errorf("unknown outcome %q", b)
}

// String gives the reason's JSON/text name ("sign_in", "second_factor", …);
// the portal and API clients switch on these names.
func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return "none"
	case ReasonSignIn:
		return "sign_in"
	case ReasonSecondFactor:
		return "second_factor"
	case ReasonStale:
		return "stale"
	case ReasonWebAuthn:
		return "webauthn"
	case ReasonDenied:
		return "denied"
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// MarshalText writes the reason by name.
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads a name written by MarshalText.
func (r *Reason) UnmarshalText(b []byte) error {
	for v := ReasonNone; v <= ReasonDenied; v++ {
		if v.String() == string(b) {
			*r = v
			return nil
		}
	}
	return fmt.Errorf("unknown reason %q", b)
}

// Decision is the result of Evaluate. It is a plain value so that Evaluate
// does not allocate. Acceptable is shared with the compiled policy: treat it
// as read-only.
type Decision struct {
	Outcome   Outcome
	Reason    Reason
	RuleIndex int    // -1 when the default applied
	RuleName  string // "default" when the default applied
	Action    string
	// Acceptable lists the second factors that would satisfy the rule
	// (Challenge with ReasonSecondFactor/ReasonStale/ReasonWebAuthn).
	Acceptable []string
	// MaxAge of the matched rule (0 = none).
	MaxAge time.Duration
	// TrustedDevice: whether a remembered device may skip the second factor
	// on this rule (the rule allows it and sets no max_age).
	TrustedDevice bool
}

// decisionJSON is Decision on the wire: max_age as "15m0s" rather than
// nanoseconds, snake_case keys like the rest of the API.
type decisionJSON struct {
	Outcome       Outcome  `json:"outcome"`
	Reason        Reason   `json:"reason"`
	RuleIndex     int      `json:"rule_index"`
	RuleName      string   `json:"rule_name"`
	Action        string   `json:"action"`
	Acceptable    []string `json:"acceptable,omitempty"`
	MaxAge        Duration `json:"max_age,omitempty"`
	TrustedDevice bool     `json:"trusted_device"`
}

// MarshalJSON writes the decision with readable names and durations.
func (d Decision) MarshalJSON() ([]byte, error) {
	return json.Marshal(decisionJSON{
		Outcome: d.Outcome, Reason: d.Reason, RuleIndex: d.RuleIndex, RuleName: d.RuleName,
		Action: d.Action, Acceptable: d.Acceptable, MaxAge: Duration(d.MaxAge), TrustedDevice: d.TrustedDevice,
	})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (d *Decision) UnmarshalJSON(b []byte) error {
	var w decisionJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*d = Decision{
		Outcome: w.Outcome, Reason: w.Reason, RuleIndex: w.RuleIndex, RuleName: w.RuleName,
		Action: w.Action, Acceptable: w.Acceptable, MaxAge: w.MaxAge.D(), TrustedDevice: w.TrustedDevice,
	}
	return nil
}

// FieldError is one problem in a policy document; Path is relative to the
// policy ("rules[2].networks[0]") so that callers can prefix it ("policy.").
// Line is the document's line for problems Parse found (0 for Compile's,
// which work on values, not text); Message then starts with "line N: ".
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
	Line    int    `json:"line,omitempty"`
}

func (e FieldError) Error() string { return e.Path + ": " + e.Message }

// ValidationErrors lists every problem found, in document order.
type ValidationErrors []FieldError

func (v ValidationErrors) Error() string {
	parts := make([]string, len(v))
	for i, e := range v {
		parts[i] = e.Error()
	}
	return fmt.Sprintf("%d problem(s): %s", len(v), strings.Join(parts, "; "))
}
