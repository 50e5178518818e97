package policy

import (
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

// Decision is the result of Evaluate. It is a plain value so that Evaluate
// does not allocate.
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
	// TrustedDevice: whether a remembered device may skip the second factor.
	TrustedDevice bool
}

// FieldError is one problem in a policy document; Path is relative to the
// policy ("rules[2].networks[0]") so that callers can prefix it ("policy.").
type FieldError struct {
	Path    string `json:"path"`
	Message string `json:"message"`
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
