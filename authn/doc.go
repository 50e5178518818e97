// Package authn holds who people are and what they have proved: users with
// argon2id passwords (Users, Hasher, PasswordPolicy) and server-side sessions
// that record which factors were satisfied, when and how (Sessions).
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
