package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keygate/keygate/authn/store/pgstore/pgtest"
)

// dbCounter reads how many transactions keygate's database has finished
// (pg_stat_database: xact_commit + xact_rollback), from a connection to
// another database so that its own queries are not counted.
type dbCounter struct {
	conn *pgx.Conn
	db   string
}

func newDBCounter(pg *pgtest.Standalone, dsn string) (*dbCounter, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pg.DSN("postgres"))
	if err != nil {
		return nil, fmt.Errorf("connect for pg_stat_database: %w", err)
	}
	return &dbCounter{conn: conn, db: cfg.Database}, nil
}

func (d *dbCounter) close() { _ = d.conn.Close(context.Background()) }

func (d *dbCounter) read() int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int64
	if err := d.conn.QueryRow(ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1`, d.db).Scan(&n); err != nil {
		fmt.Printf("pg_stat_database: %v\n", err)
		return -1
	}
	return n
}

// dbWindow is the database's transactions over a stretch of the run.
type dbWindow struct {
	start    time.Time
	first    int64
	tx       int64
	seconds  float64
	requests float64
}

func (d *dbCounter) begin() dbWindow {
	if d == nil {
		return dbWindow{}
	}
	return dbWindow{start: time.Now(), first: d.read()}
}

// end closes w. A backend sends its counts to the statistics at most once
// a second (PostgreSQL 15: at a transaction's end, or after a second of
// idling), so the window is read a little over a second after the load.
func (d *dbCounter) end(w dbWindow, requests float64) dbWindow {
	time.Sleep(1200 * time.Millisecond)
	w.tx = d.read() - w.first
	w.seconds = time.Since(w.start).Seconds()
	w.requests = requests
	return w
}

func (w *dbWindow) add(o dbWindow) {
	w.tx += o.tx
	w.seconds += o.seconds
	w.requests += o.requests
}

// reportDB prints the database transactions of keygate on PostgreSQL while
// it was loaded, less those it makes anyway (the change feed's slow poll,
// the sweeper), measured while the other targets were loaded.
func reportDB(loaded, idle dbWindow) {
	rate := 0.0
	if idle.seconds > 0 {
		rate = float64(idle.tx) / idle.seconds
	}
	expected := rate * loaded.seconds
	fmt.Printf("\n## keygate on PostgreSQL: database transactions on the hot path (pg_stat_database xact_commit + xact_rollback)\n\n")
	fmt.Printf("- while loaded: %d transactions in %.1f s, %.0f requests served\n", loaded.tx, loaded.seconds, loaded.requests)
	fmt.Printf("- while idle (the other rows loaded): %d in %.1f s = %.2f/s (the change feed's poll, the sweeper): %.1f expected in the loaded windows\n",
		idle.tx, idle.seconds, rate, expected)
	per := 0.0
	if loaded.requests > 0 {
		per = (float64(loaded.tx) - expected) / loaded.requests * 1e6
	}
	loadedRate := 0.0
	if loaded.seconds > 0 {
		loadedRate = float64(loaded.tx) / loaded.seconds
	}
	// At or below zero: the hot path made no transaction of its own (the
	// background's count varies from window to window).
	fmt.Printf("- the hot path's own: %+.1f transactions (%.2f/s loaded against %.2f/s idle), %+.2f per million requests\n",
		float64(loaded.tx)-expected, loadedRate, rate, per)
}

// signIns times password sign-ins end to end (POST /.keygate/api/login,
// as a browser's script sends it) on Badger and on PostgreSQL, one at a
// time and alternating between the two. The seeded users hold the seed's
// cheap hash, so the first pass verifies it and then rehashes the password
// with the production argon2id and saves it (keygate upgrades hashes at
// sign-in); the second pass verifies the production hash, which is what a
// person's sign-in costs.
func signIns(n int, kg, kgPG *proc) error {
	backends := []*proc{kg}
	if kgPG != nil {
		backends = append(backends, kgPG)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	post := func(p *proc, user string) (time.Duration, error) {
		body, _ := json.Marshal(map[string]string{"username": user, "password": "seeded-password-not-for-people"})
		req, err := http.NewRequest(http.MethodPost, p.URL()+"/.keygate/api/login", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Host = benchHost
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		t := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return 0, err
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t)
		if resp.StatusCode != http.StatusOK {
			return 0, fmt.Errorf("%s: sign-in of %s: %d %s", p.name, user, resp.StatusCode, raw)
		}
		return took, nil
	}
	lat := map[*proc][2][]time.Duration{}
	for pass := range 2 {
		for i := 1; i <= n; i++ {
			user := fmt.Sprintf("user%06d", i)
			order := slices.Clone(backends)
			if i%2 == 1 {
				slices.Reverse(order)
			}
			for _, p := range order {
				d, err := post(p, user)
				if err != nil {
					return err
				}
				l := lat[p]
				l[pass] = append(l[pass], d)
				lat[p] = l
			}
		}
	}
	q := func(ds []time.Duration) string {
		s := slices.Clone(ds)
		slices.Sort(s)
		ms := func(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d.Microseconds())/1e3) }
		return ms(s[len(s)/2]) + " / " + ms(s[len(s)*99/100]) + " / " + ms(s[len(s)-1])
	}
	fmt.Printf("\n## Password sign-in end to end (POST /.keygate/api/login, %d users, one at a time, backends alternating)\n\n", n)
	fmt.Println("| backend | production argon2id: p50 / p99 / max ms | first sign-in (seed's cheap hash verified, rehashed, saved): p50 / p99 / max ms |")
	fmt.Println("|---|---:|---:|")
	for _, p := range backends {
		fmt.Printf("| %s | %s | %s |\n", p.name, q(lat[p][1]), q(lat[p][0]))
	}
	return nil
}
