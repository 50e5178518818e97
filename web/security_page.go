package web

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

// The security check-up (/.keygate/security and GET /api/security): the
// account at one glance — its second factors and how strong each is,
// recovery codes left, the last sign-ins, remembered devices, a pending
// account recovery, "always ask me for a second factor" — and the one next
// step that would make it safer. It also holds the switch of "always ask"
// (POST /security/always-ask, POST /api/security/always-ask).
//
// The next step is the first of these that applies (nextStep):
//
//  1. recovery_pending: an account recovery is under way. If the person
//     did not start it, someone else is taking the account over: nothing
//     else matters as much (finish or cancel it on the recovery page).
//  2. add_factor: no second factor (an address that receives codes is no
//     second factor here, as everywhere on the security page).
//  3. add_recovery: no backup — a backup factor (recovery codes) is
//     offered and the person has none: losing the one device strands them.
//  4. add_key: only weak factors — every factor held is weaker than a
//     security key and a factor that reaches one can be enrolled here
//     (WebAuthn configured).
//  5. renew_recovery: few recovery codes left (fewRecoveryCodes or fewer).
//  6. confirm_email: the address is not confirmed (no notices, no reset,
//     no recovery reach it).
//  7. always_ask: "always ask me for a second factor" is off.
//  8. none: nothing to do.

// fewRecoveryCodes: at or below this many unused codes, make new ones.
const fewRecoveryCodes = 3

// lastSignIns is how many sign-ins the check-up lists.
const lastSignIns = 5

// Next steps of the check-up, as the API names them.
const (
	stepRecoveryPending = "recovery_pending"
	stepAddFactor       = "add_factor"
	stepAddRecovery     = "add_recovery"
	stepAddKey          = "add_key"
	stepRenewRecovery   = "renew_recovery"
	stepConfirmEmail    = "confirm_email"
	stepAlwaysAsk       = "always_ask"
	stepNone            = "none"
)

const securityPath = portalPrefix + "security"

// errAlwaysAskValue: the switch's form or body did not say on or off.
var errAlwaysAskValue = &Error{Status: http.StatusBadRequest, Code: "bad_request", Key: "security.always_ask.bad_value"}

// securityRoutes are the check-up's page and API.
func (s *Server) securityRoutes(k, api *gin.RouterGroup) {
	if s.mfa == nil {
		return
	}
	k.GET("/security", s.handle(s.securityPage))
	k.POST("/security/always-ask", s.handle(s.alwaysAskSubmit))
	api.GET("/security", s.handle(s.apiSecurity))
	api.POST("/security/always-ask", s.handle(s.apiAlwaysAsk))
}

// askOf is what a request of sess asks for beyond the rule: the factors to
// offer when the person chose "always ask" (nil otherwise). It reads the
// session only: the gate's hot path does no I/O for it.
func (s *Server) askOf(sess *authn.Session) []string {
	if sess == nil || !sess.AlwaysAsk || len(s.askKinds) == 0 {
		return nil
	}
	return s.askKinds
}

// hasSecondFactor says whether subj proved a second factor in this session
// or signed in on a remembered device (which stood for one when it was
// remembered).
func hasSecondFactor(subj *policy.Subject) bool {
	if subj.TrustedDevice {
		return true
	}
	for i := range subj.Proofs {
		if authn.IsSecondFactor(subj.Proofs[i].Kind) {
			return true
		}
	}
	return false
}

// checkFactor is one way the person proves a second factor.
type checkFactor struct {
	Kind     string    `json:"kind"`
	Name     string    `json:"name,omitempty"`
	Detail   string    `json:"detail,omitempty"`
	Strength string    `json:"strength"`
	Backup   bool      `json:"backup,omitempty"`
	Added    time.Time `json:"created_at,omitzero"`
}

// checkSignIn is one of the last sign-ins.
type checkSignIn struct {
	At      time.Time `json:"at"`
	Factor  string    `json:"factor,omitempty"`
	IP      string    `json:"ip,omitempty"`
	Browser string    `json:"browser,omitempty"`
}

// checkRecovery is a pending account recovery.
type checkRecovery struct {
	Pending bool      `json:"pending"`
	ReadyAt time.Time `json:"ready_at,omitzero"`
	Ready   bool      `json:"ready,omitempty"`
}

// checkNext is the one next step and where it is taken.
type checkNext struct {
	Step string `json:"step"`
	Link string `json:"link,omitempty"`
}

// checkup is the account at a glance: the page's view and the API's body.
type checkup struct {
	Username  string        `json:"username"`
	Factors   []checkFactor `json:"factors"`
	Strongest string        `json:"strongest"`
	// RecoveryCodes is how many unused recovery codes are left (nil: this
	// keygate offers none).
	RecoveryCodes *int           `json:"recovery_codes_left"`
	SignIns       []checkSignIn  `json:"last_sign_ins"`
	Devices       []authn.Device `json:"remembered_devices"`
	Recovery      checkRecovery  `json:"recovery"`
	AlwaysAsk     bool           `json:"always_ask"`
	Email         string         `json:"email,omitempty"`
	EmailOK       bool           `json:"email_verified"`
	Next          checkNext      `json:"next"`
}

// checkFacts are the facts the next step is chosen from, apart so that
// the rule reads as written above.
type checkFacts struct {
	recoveryPending bool
	hasFactor       bool // a second factor other than a backup
	backupOffered   bool // a backup factor can be enrolled
	hasBackup       bool
	codesLeft       int
	weakOnly        bool // every factor held is weaker than a key …
	keyOffered      bool // … and one that reaches a key can be enrolled
	emailUnverified bool
	alwaysAsk       bool
}

// nextStep is the rule written at the top of this file.
func nextStep(f checkFacts) string {
	switch {
	case f.recoveryPending:
		return stepRecoveryPending
	case !f.hasFactor:
		return stepAddFactor
	case f.backupOffered && !f.hasBackup:
		return stepAddRecovery
	case f.weakOnly && f.keyOffered:
		return stepAddKey
	case f.hasBackup && f.codesLeft <= fewRecoveryCodes:
		return stepRenewRecovery
	case f.emailUnverified:
		return stepConfirmEmail
	case !f.alwaysAsk:
		return stepAlwaysAsk
	}
	return stepNone
}

// stepLink is where each step is taken.
func stepLink(step string) string {
	switch step {
	case stepRecoveryPending:
		return portalPrefix + "recover"
	case stepAlwaysAsk:
		return securityPath + "#always-ask"
	case stepNone:
		return ""
	}
	return settingsPath
}

// checkup gathers the account's state for sess.
func (s *Server) checkup(c *gin.Context, sess *authn.Session) (*checkup, error) {
	ctx := c.Request.Context()
	m := s.mfa
	u, err := s.userOf(c, sess)
	if err != nil {
		return nil, err
	}
	creds, err := m.Credentials(ctx, sess.Username)
	if err != nil {
		return nil, err
	}
	methods, err := m.Methods(ctx, sess.Username)
	if err != nil {
		return nil, err
	}
	devs, err := m.Devices(ctx, sess.Username)
	if err != nil {
		return nil, err
	}
	events, err := s.events(c, sess.Username)
	if err != nil {
		return nil, err
	}
	cu := &checkup{Username: u.Username, Factors: []checkFactor{}, Devices: devs, AlwaysAsk: u.AlwaysAsk,
		Email: u.Email, EmailOK: u.EmailVerified, SignIns: []checkSignIn{}}
	if cu.Devices == nil {
		cu.Devices = []authn.Device{}
	}
	f := checkFacts{alwaysAsk: u.AlwaysAsk, emailUnverified: u.Email != "" && !u.EmailVerified, weakOnly: true}
	strongest := factors.StrengthNone
	for _, cr := range creds {
		fc := m.Factors().Get(cr.Kind)
		if fc == nil {
			continue
		}
		_, backup := fc.(factors.Backup)
		str := fc.Strength(cr.Attested)
		cu.Factors = append(cu.Factors, checkFactor{Kind: cr.Kind, Name: cr.Name, Detail: cr.Detail, Strength: str.String(), Backup: backup, Added: cr.CreatedAt})
		if backup {
			f.hasBackup = true
			continue
		}
		f.hasFactor = true
		strongest = max(strongest, str)
		if str >= factors.StrengthKey {
			f.weakOnly = false
		}
	}
	// Factors without a credential here (a code to the confirmed address)
	// are listed too: the person can sign in with them.
	for _, md := range methods {
		fc := m.Factors().Get(md.Kind)
		if fc == nil {
			continue
		}
		if _, managed := fc.(factors.Manager); managed {
			continue
		}
		cu.Factors = append(cu.Factors, checkFactor{Kind: md.Kind, Detail: md.Detail, Strength: fc.Strength(false).String()})
	}
	for _, fc := range m.Factors() {
		_, enrols := fc.(factors.Enroller)
		if _, backup := fc.(factors.Backup); backup {
			f.backupOffered = f.backupOffered || enrols
			left := 0
			for _, md := range methods {
				if md.Kind == fc.Kind() {
					left, _ = strconv.Atoi(md.Detail) // the backup's offer says how many are left
				}
			}
			if cu.RecoveryCodes == nil {
				cu.RecoveryCodes = &left
			}
			f.codesLeft = left
			continue
		}
		if enrols && fc.Strength(false) >= factors.StrengthKey {
			f.keyOffered = true
		}
	}
	cu.Strongest = strongest.String()
	if m.RecoveryEnabled() {
		rs, err := m.RecoveryState(ctx, cookieID(c.Request))
		if err != nil && !errors.Is(err, authn.ErrSessionUnavailable) {
			return nil, err
		}
		if rs.Pending != nil {
			cu.Recovery = checkRecovery{Pending: true, Ready: rs.Ready, ReadyAt: rs.Pending.ReadyAt.UTC()}
			f.recoveryPending = true
		}
	}
	for _, e := range events {
		if e.Kind != activity.EventSignIn {
			continue
		}
		cu.SignIns = append(cu.SignIns, checkSignIn{At: e.At.UTC(), Factor: e.Factor, IP: e.IP, Browser: e.Browser})
		if len(cu.SignIns) == lastSignIns {
			break
		}
	}
	step := nextStep(f)
	cu.Next = checkNext{Step: step, Link: stepLink(step)}
	return cu, nil
}

// securityView is the check-up page's part of pageData.
type securityView struct {
	*checkup
	SignInRows []eventView
	// Codes: this keygate offers recovery codes; CodesLeft are unused.
	Codes     bool
	CodesLeft int
	// Elevate: turning "always ask" off was refused for want of a fresh
	// second factor; the page links to one.
	Elevate bool
}

// securityPage shows the check-up.
func (s *Server) securityPage(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	return s.renderSecurity(c, sess, nil, http.StatusOK)
}

func (s *Server) renderSecurity(c *gin.Context, sess *authn.Session, pageErr *Error, status int) error {
	cu, err := s.checkup(c, sess)
	if err != nil {
		return err
	}
	d := s.page(c)
	d.Title = d.T.T("security.title")
	d.setError(pageErr)
	switch c.Query("done") {
	case "always_ask_on", "always_ask_off":
		d.Notice = d.T.T("security.done." + c.Query("done"))
	}
	v := &securityView{checkup: cu}
	for _, f := range cu.Factors {
		// The count is shown with a sheet held; without one the next
		// step (or the factors list) already says there is none.
		if f.Backup && cu.RecoveryCodes != nil {
			v.Codes, v.CodesLeft = true, *cu.RecoveryCodes
		}
	}
	for _, e := range cu.SignIns {
		ev := eventView{Date: e.At.Format("2006-01-02"), Time: e.At.Format("15:04 UTC"), IP: e.IP, Browser: e.Browser}
		if e.Factor != "" {
			ev.Factor = d.T.T("factor." + e.Factor)
		}
		v.SignInRows = append(v.SignInRows, ev)
	}
	v.Elevate = pageErr != nil && pageErr.Code == "elevation_required"
	d.Session = sess
	d.Redirect = securityPath
	d.Security = v
	s.render(c, status, "security", d)
	return nil
}

// apiSecurity: GET /api/security → the check-up as JSON.
func (s *Server) apiSecurity(c *gin.Context) error {
	sess := s.session(c.Request)
	if sess == nil {
		return errNotSignedIn
	}
	cu, err := s.checkup(c, sess)
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, cu)
	return nil
}

// alwaysAskSubmit is the switch's form: on=1 or on=0.
func (s *Server) alwaysAskSubmit(c *gin.Context) error {
	sess := s.requireSession(c)
	if sess == nil {
		return nil
	}
	var on bool
	switch c.PostForm("on") {
	case "1":
		on = true
	case "0":
	default:
		return s.renderSecurity(c, sess, errAlwaysAskValue, errAlwaysAskValue.Status)
	}
	ns, err := s.mfa.SetAlwaysAsk(c.Request.Context(), cookieID(c.Request), on, s.client(c))
	if err != nil {
		e := s.problem(err)
		if e.Status >= 500 {
			return err
		}
		return s.renderSecurity(c, sess, e, e.Status)
	}
	done := "always_ask_off"
	if ns.AlwaysAsk {
		done = "always_ask_on"
	}
	c.Redirect(http.StatusSeeOther, securityPath+"?done="+done)
	return nil
}

// alwaysAskRequest is the body of POST /api/security/always-ask.
type alwaysAskRequest struct {
	On *bool `json:"on"`
}

// apiAlwaysAsk: POST /api/security/always-ask {on} → {always_ask}.
func (s *Server) apiAlwaysAsk(c *gin.Context) error {
	if s.session(c.Request) == nil {
		return errNotSignedIn
	}
	var req alwaysAskRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.On == nil {
		return errAlwaysAskValue
	}
	ns, err := s.mfa.SetAlwaysAsk(c.Request.Context(), cookieID(c.Request), *req.On, s.client(c))
	if err != nil {
		return err
	}
	writeJSON(c.Writer, http.StatusOK, gin.H{"always_ask": ns.AlwaysAsk})
	return nil
}
