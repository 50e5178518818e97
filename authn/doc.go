// Package authn holds who people are and what they have proved: users with
// argon2id passwords (Users, Hasher, PasswordPolicy) and server-side sessions
// that record which factors were satisfied, when and how (Sessions),
// brute-force regulation of every verifier (Regulator), and the flows that
// drive second factors through factors.Factor (MFA).
//
// Its neighbours are rooms of their own, so that authn stays about
// decisions: authn/activity keeps the activity log, the audit log and the
// notices; authn/mail is the mail transport the notices and the email-code
// factor share; authn/policies keeps the policy versions; authn/store is
// the storage contract. authn reports what happens to accounts through one
// interface, Events, which the activity log and metrics implement;
// constructors take it (and the Regulator) so that every part is whole once
// built, with nothing set afterwards.
//
// authn owns the storage interface it consumes (KV, a subset of store.KV);
// cmd/keygate wires in the concrete backend. Every record is a private type
// serialised as JSON, so the domain types can change without touching the
// backend.
//
// Storage keys:
//
//	user/<username>           userRecord (JSON), durable, CAS on version
//	user_email/<lower email>  the owning username: the email uniqueness index
//	session/<hex sha256(ID)>  sessionRecord (JSON), durable, TTL = absolute expiry
package authn
