package authn

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/keygate/keygate/authn/activity"
	"github.com/keygate/keygate/authn/store"
)

// ErrDeviceNotFound: no such remembered device for this user.
var ErrDeviceNotFound = errors.New("authn: no such remembered device")

// Device is a browser a person asked keygate to remember ("remember this
// device for N days"): on rules that allow it, a new session from it skips
// the second factor.
type Device struct {
	ID         string    `json:"id"` // names the device in lists; not the token
	Username   string    `json:"username"`
	Name       string    `json:"name"` // from the user agent: "Firefox on Linux"
	IP         string    `json:"ip"`
	CreatedAt  time.Time `json:"created_at"`
	LastUsedAt time.Time `json:"last_used_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// Devices keeps remembered devices. The browser holds a random token; the
// store keeps only its hash, under the user, so a token is checked once at
// sign-in (never per request) and only for the user who signed in.
type Devices struct {
	kv  KV
	now func() time.Time
}

// NewDevices builds the device registry.
func NewDevices(kv KV, now func() time.Time) *Devices {
	if now == nil {
		now = time.Now
	}
	return &Devices{kv: kv, now: now}
}

func deviceKey(username, id string) string { return devicePrefix + username + "/" + id }

func deviceID(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:16])
}

// Trust remembers this browser for username for ttl and returns the token
// to put in the browser's device cookie.
func (d *Devices) Trust(ctx context.Context, username, userAgent, ip string, ttl time.Duration) (string, Device, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", Device{}, fmt.Errorf("trust device: %w", err)
	}
	token := base64.RawURLEncoding.EncodeToString(b)
	now := d.now().UTC()
	dev := Device{ID: deviceID(token), Username: username, Name: activity.DescribeUserAgent(userAgent), IP: activity.Clip(ip, maxIPLen),
		CreatedAt: now, LastUsedAt: now, ExpiresAt: now.Add(ttl)}
	raw, _ := json.Marshal(dev)
	if _, err := d.kv.Set(ctx, deviceKey(username, dev.ID), raw, store.WriteOptions{TTL: ttl, Durable: true}); err != nil {
		return "", Device{}, fmt.Errorf("trust device: %w", err)
	}
	return token, dev, nil
}

// Check says whether token is a live remembered device of username, and
// records its use.
func (d *Devices) Check(ctx context.Context, username, token, ip string) (Device, bool) {
	if len(token) != 43 {
		return Device{}, false
	}
	key := deviceKey(username, deviceID(token))
	it, err := d.kv.Get(ctx, key)
	if err != nil {
		return Device{}, false
	}
	var dev Device
	if json.Unmarshal(it.Value, &dev) != nil || dev.Username != username || !d.now().Before(dev.ExpiresAt) {
		return Device{}, false
	}
	dev.LastUsedAt, dev.IP = d.now().UTC(), activity.Clip(ip, maxIPLen)
	raw, _ := json.Marshal(dev)
	// Best effort: losing a last-used update to a concurrent one is fine.
	ttl := time.Until(dev.ExpiresAt)
	if ttl > 0 {
		_, _ = d.kv.CompareAndSet(ctx, key, raw, it.Version, store.WriteOptions{TTL: ttl})
	}
	return dev, true
}

// List returns username's remembered devices, most recently used first.
func (d *Devices) List(ctx context.Context, username string) ([]Device, error) {
	var out []Device
	err := d.kv.Scan(ctx, devicePrefix+username+"/", func(it store.Item) error {
		var dev Device
		if json.Unmarshal(it.Value, &dev) == nil && dev.Username == username {
			out = append(out, dev)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list devices: %w", err)
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].LastUsedAt.After(out[j-1].LastUsedAt); j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out, nil
}

// Revoke forgets one device.
func (d *Devices) Revoke(ctx context.Context, username, id string) error {
	key := deviceKey(username, id)
	if _, err := d.kv.Get(ctx, key); errors.Is(err, store.ErrNotFound) {
		return ErrDeviceNotFound
	} else if err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	if err := d.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("revoke device: %w", err)
	}
	return nil
}

// RevokeAll forgets every device of username (password or factors changed,
// admin reset) and returns how many there were.
func (d *Devices) RevokeAll(ctx context.Context, username string) (int, error) {
	devs, err := d.List(ctx, username)
	if err != nil {
		return 0, err
	}
	for _, dev := range devs {
		if err := d.kv.Delete(ctx, deviceKey(username, dev.ID)); err != nil {
			return 0, fmt.Errorf("revoke devices: %w", err)
		}
	}
	return len(devs), nil
}
