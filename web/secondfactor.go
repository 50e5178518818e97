package web

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/keygate/keygate/authn"
	"github.com/keygate/keygate/factors"
	"github.com/keygate/keygate/policy"
)

const (
	// deviceCookie holds a remembered device's token.
	deviceCookie = "keygate_device"
	// lastFactorCookie remembers the kind last used on this browser so
	// the chooser can offer it first. Not secret.
	lastFactorCookie = "keygate_factor"
)

// factorKinds are the registered factors' kinds, in the chooser's order.
func (s *Server) factorKinds() []string {
	if s.mfa == nil {
		return nil
	}
	return s.mfa.Factors().Kinds()
}

// challengeFor works out what the target asks of this session: the
// acceptable factors, whether a remembered device may be offered, and
// whether the target is keygate's own page (then any factor elevates).
type challengeInfo struct {
	target     string
	acceptable []string
	trusted    bool // the rule lets a device be remembered
	portal     bool // the target is a keygate page (elevation)
	done       bool // nothing more is needed
	denied     bool
}

func (s *Server) challengeFor(c *gin.Context, sess *authn.Session, rd string) challengeInfo {
	ci := challengeInfo{target: s.redirectOrDefault(rd)}
	d, ok := s.decisionFor(c, sess, ci.target)
	if !ok {
		ci.portal, ci.acceptable, ci.trusted = true, s.factorKinds(), false
		return ci
	}
	// Decisions of two_factor rules say whether a remembered device may
	// skip them on every outcome, so "remember" is offered (and honoured)
	// only where the rule allows it.
	ci.trusted = d.Action == policy.ActionTwoFactor && d.TrustedDevice && s.rememberDevice > 0
	switch d.Outcome {
	case policy.Allow:
		ci.done = true
	case policy.Deny:
		ci.denied = true
	default:
		ci.acceptable = d.Acceptable
	}
	return ci
}

// methodsFor lists what this user can use here, in chooser order, and the
// detail to show with each (masked address, codes left).
func (s *Server) methodsFor(ctx context.Context, username string, acceptable []string) ([]authn.Method, error) {
	all, err := s.mfa.Methods(ctx, username)
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, m := range all {
		if slices.Contains(acceptable, m.Kind) {
			out = append(out, m)
		}
	}
	return out, nil
}

// secondFactorPage is the chooser: every factor the user has and the rule
// accepts, the last used first. With none it explains what to do.
func (s *Server) secondFactorPage(c *gin.Context) error {
	rd := c.Query("rd")
	sess := s.session(c.Request)
	if sess == nil {
		c.Redirect(http.StatusFound, portalPrefix+"login?rd="+url.QueryEscape(s.safeRedirect(rd)))
		return nil
	}
	ci := s.challengeFor(c, sess, rd)
	switch {
	case ci.done:
		c.Redirect(http.StatusFound, ci.target)
		return nil
	case ci.denied:
		c.Redirect(http.StatusFound, portalPrefix+"denied")
		return nil
	}
	var methods []authn.Method
	if s.mfa != nil {
		var err error
		if methods, err = s.methodsFor(c.Request.Context(), sess.Username, ci.acceptable); err != nil {
			return err
		}
	}
	// From the security page, "need" names the proof a change asks for:
	// offer only the factors that can give it (when the person has one).
	if need, ok := factors.ParseStrength(c.Query("need")); ok && ci.portal {
		strong := slices.DeleteFunc(slices.Clone(methods), func(m authn.Method) bool {
			f := s.mfa.Factors().Get(m.Kind)
			return f == nil || f.Strength(true) < need
		})
		if len(strong) > 0 {
			methods = strong
		}
	}
	d := s.page(c)
	d.Redirect = ci.target
	if len(methods) == 0 {
		d.Title = d.T.T("second.title")
		d.Paragraphs = []string{d.T.T("second.text"), d.T.T("second.todo")}
		if s.mfa != nil {
			d.LinkURL, d.LinkText = portalPrefix+"settings", d.T.T("settings.title")
		}
		s.render(c, http.StatusOK, "message", d)
		return nil
	}
	// The last method used on this browser goes first; with "lost"
	// set the chooser shows only what works without the usual device.
	if ck, ok := readCookie(c.Request, lastFactorCookie); ok {
		if i := slices.IndexFunc(methods, func(m authn.Method) bool { return m.Kind == ck }); i > 0 {
			m := methods[i]
			methods = append([]authn.Method{m}, slices.Delete(methods, i, i+1)...)
		}
	}
	lost := c.Query("lost") == "1"
	if lost {
		methods = slices.DeleteFunc(methods, func(m authn.Method) bool { return !s.worksWithoutDevice(m.Kind) })
	}
	d.Title = d.T.T("chooser.title")
	if lost {
		d.Title = d.T.T("chooser.lost_title")
	}
	d.Methods = methods
	d.Lost = lost
	s.render(c, http.StatusOK, "chooser", d)
	return nil
}

// worksWithoutDevice says whether a factor still works when the person's
// usual device (phone, key) is lost: a backup sheet, or codes mailed to
// the address. A code by SMS goes to the phone that may be the one lost.
func (s *Server) worksWithoutDevice(kind string) bool {
	f := s.mfa.Factors().Get(kind)
	if f == nil {
		return false
	}
	_, backup := f.(factors.Backup)
	_, mailed := f.(factors.AddressCodes)
	return backup || mailed
}

// factorPage renders the page of one method: a code form, or the security
// key button.
func (s *Server) factorPage(c *gin.Context) error {
	kind := c.Param("kind")
	if !slices.Contains(s.factorKinds(), kind) {
		return errNoSuchFactor
	}
	sess := s.session(c.Request)
	rd := c.Query("rd")
	if sess == nil {
		c.Redirect(http.StatusFound, portalPrefix+"login?rd="+url.QueryEscape(s.safeRedirect(rd)))
		return nil
	}
	return s.renderFactor(c, sess, kind, rd, nil, http.StatusOK)
}

func (s *Server) renderFactor(c *gin.Context, sess *authn.Session, kind, rd string, pageErr *Error, status int) error {
	ci := s.challengeFor(c, sess, rd)
	if ci.done && pageErr == nil {
		c.Redirect(http.StatusFound, ci.target)
		return nil
	}
	d := s.page(c)
	d.Kind = kind
	d.Redirect = ci.target
	d.Remember = ci.trusted
	d.RememberFor = s.rememberDevice
	d.Title = d.T.T("factor." + kind + ".title")
	d.setError(pageErr)
	f := s.mfa.Factors().Get(kind)
	if _, sends := f.(factors.Resender); sends {
		d.Sends = true
		p, ok, err := s.mfa.Pending(c.Request.Context(), cookieID(c.Request), kind)
		if err != nil && !errors.Is(err, authn.ErrFactorUnavailable) {
			return err
		}
		if ok {
			d.Pending = &p
			now := s.now()
			if wait := p.ResendAt.Sub(now); wait > 0 {
				d.ResendIn = int(wait.Seconds() + 0.999)
				d.ResendWait = time.Duration(d.ResendIn) * time.Second
			}
			// Said in whole minutes: "valid for 10 minutes", not 9 min 58 s.
			d.ValidFor = max(p.ExpiresAt.Sub(now), 0).Round(time.Minute)
		}
	}
	// One page per shape: a code to type, or a browser ceremony.
	page := "code"
	if f != nil && f.Shape() == factors.ShapeCeremony {
		page = "webauthn"
	}
	s.render(c, status, page, d)
	return nil
}

// factorSubmit checks a code posted by the no-JS forms.
func (s *Server) factorSubmit(c *gin.Context) error {
	kind := c.Param("kind")
	sess := s.session(c.Request)
	rd := c.PostForm("rd")
	if sess == nil {
		c.Redirect(http.StatusSeeOther, portalPrefix+"login?rd="+url.QueryEscape(s.safeRedirect(rd)))
		return nil
	}
	next, err := s.verifyCode(c, kind, c.PostForm("code"))
	s.metrics.SecondFactor(kind, err)
	if err != nil {
		e := s.problem(err)
		if e.Status >= 500 {
			return err
		}
		if errors.Is(e, authn.ErrLocked) {
			s.renderLocked(c, e, false, "")
			return nil
		}
		return s.renderFactor(c, sess, kind, rd, e, e.Status)
	}
	st := s.afterSecondFactor(c, next, kind, rd, c.PostForm("remember") == "1")
	c.Redirect(http.StatusSeeOther, st.Redirect)
	return nil
}

// verifyCode runs the verifier of a code factor.
func (s *Server) verifyCode(c *gin.Context, kind, code string) (*authn.Session, error) {
	ctx, id := c.Request.Context(), cookieID(c.Request)
	code = strings.TrimSpace(code)
	if code == "" {
		return nil, errf(http.StatusBadRequest, "missing_code", "err.missing_code", nil)
	}
	f := s.mfa.Factors().Get(kind)
	if f == nil || f.Shape() != factors.ShapeCode {
		return nil, errNoSuchFactor
	}
	t := s.tr.pick(c.GetHeader("Accept-Language"))
	sess, _, err := s.mfa.Prove(ctx, id, kind, langOf(t), factors.Response{Code: code})
	return sess, err
}

// afterSecondFactor sets the rotated session cookie, remembers the method
// (and the device when asked and allowed) and says where to go next.
func (s *Server) afterSecondFactor(c *gin.Context, sess *authn.Session, kind, rd string, remember bool) step {
	s.setSessionCookie(c, sess.ID)
	http.SetCookie(c.Writer, s.plainCookie(c.Request, lastFactorCookie, kind, 365*24*3600))
	ci := s.challengeFor(c, sess, rd)
	if remember && ci.trusted {
		token, _, err := s.mfa.TrustDevice(c.Request.Context(), sess.ID, c.Request.UserAgent(), clientAddr(c).String(), s.rememberDevice)
		if err == nil {
			ck := s.plainCookie(c.Request, deviceCookie, token, int(s.rememberDevice.Seconds()))
			ck.HttpOnly = true
			http.SetCookie(c.Writer, ck)
		} else {
			s.log.Warn("remember device", "user", sess.Username, "err", err)
		}
	}
	s.log.Info("second factor", "user", sess.Username, "factor", kind, "ip", clientAddr(c).String())
	return s.nextStep(c, sess, rd)
}

// plainCookie is a long-lived cookie with the session cookie's scope.
func (s *Server) plainCookie(r *http.Request, name, value string, maxAge int) *http.Cookie {
	return s.cookieFor(r, name, value, maxAge) // __Host- when host-only over HTTPS
}

// codeSend sends a sign-in code of a factor that sends them (form POST
// to /second-factor/{kind}/send).
func (s *Server) codeSend(c *gin.Context) error {
	kind := c.Param("kind")
	if _, sends := s.mfa.Factors().Get(kind).(factors.Resender); !sends {
		return errNoSuchFactor
	}
	sess := s.session(c.Request)
	rd := c.PostForm("rd")
	if sess == nil {
		c.Redirect(http.StatusSeeOther, portalPrefix+"login?rd="+url.QueryEscape(s.safeRedirect(rd)))
		return nil
	}
	t := s.tr.pick(c.GetHeader("Accept-Language"))
	_, err := s.mfa.Begin(c.Request.Context(), cookieID(c.Request), kind, langOf(t))
	if err != nil {
		e := s.problem(err)
		if e.Status >= 500 && !errors.Is(err, factors.ErrSendFailed) {
			return err
		}
		return s.renderFactor(c, sess, kind, rd, e, e.Status)
	}
	c.Redirect(http.StatusSeeOther, portalPrefix+"second-factor/"+kind+"?rd="+url.QueryEscape(s.redirectOrDefault(rd)))
	return nil
}

// langOf gives the language code emails are written in.
func langOf(t *catalog) string {
	base, _ := t.tag.Base()
	return base.String()
}
