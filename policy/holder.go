package policy

import "sync/atomic"

// Holder keeps the policy in force. Readers on the request path Load it with
// one atomic read; a reload compiles the new policy first and Stores it only
// when Compile succeeded, so a broken edit leaves the old policy serving.
// The zero Holder holds nil, and a nil *Compiled denies every request.
type Holder struct{ p atomic.Pointer[Compiled] }

// Load returns the compiled policy in force, or nil before the first Store.
func (h *Holder) Load() *Compiled { return h.p.Load() }

// Store puts c in force for every later Load.
func (h *Holder) Store(c *Compiled) { h.p.Store(c) }

// RequiresSecondFactor says whether any rule, or the default, asks for a
// second factor: then a person may not remove their last one.
func (c *Compiled) RequiresSecondFactor() bool {
	if c == nil {
		return true
	}
	if c.def.action == actTwoFactor {
		return true
	}
	for i := range c.rules {
		if c.rules[i].action == actTwoFactor {
			return true
		}
	}
	return false
}
