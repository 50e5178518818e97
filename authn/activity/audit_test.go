package activity

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"
)

func TestAuditRecordsInOrderAndExportsJSONLines(t *testing.T) {
	kv := openStore(t, t.TempDir())
	c := newClock()
	a := NewAudit(kv, c.Now, quietLogger())
	ctx := context.Background()
	// Several entries in the same instant (a frozen test clock) keep the
	// order they were made in.
	for i := range 5 {
		if _, err := a.Record(ctx, AuditEntry{Admin: "alice", Via: ViaWeb, IP: "192.0.2.1", Action: AuditUserDisable,
			Target: fmt.Sprintf("user%d", i), Details: map[string]string{"sessions_ended": "1"}}); err != nil {
			t.Fatal(err)
		}
	}
	c.Advance(time.Second)
	if _, err := a.Record(ctx, AuditEntry{Admin: "root", Via: ViaCLI, Action: AuditPolicyImport, Target: "policy"}); err != nil {
		t.Fatal(err)
	}
	recent, err := a.Recent(ctx, 3)
	if err != nil || len(recent) != 3 {
		t.Fatalf("recent: %v %d", err, len(recent))
	}
	if recent[0].Admin != "root" || recent[1].Target != "user4" || recent[2].Target != "user3" {
		t.Fatalf("recent order: %+v", recent)
	}
	var buf bytes.Buffer
	if err := a.Export(ctx, &buf); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&buf)
	var got []AuditEntry
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, e)
	}
	if len(got) != 6 || got[0].Target != "user0" || got[5].Via != ViaCLI || got[0].IP != "192.0.2.1" || got[0].At.IsZero() || got[0].ID == got[1].ID {
		t.Fatalf("export: %+v", got)
	}
}
