package web

import (
	"testing"
	"time"
)

// Durations read as people say them, in both languages, with Russian's
// three plural forms; never Go's "15m0s".
func TestHumanDurations(t *testing.T) {
	tr, err := loadTranslator()
	if err != nil {
		t.Fatal(err)
	}
	en, ru := tr.pick("en"), tr.pick("ru")
	if en.Lang() != "en" || ru.Lang() != "ru" {
		t.Fatalf("picked %s and %s", en.Lang(), ru.Lang())
	}
	for _, tc := range []struct {
		d      time.Duration
		en, ru string
	}{
		{15 * time.Minute, "15 minutes", "15 минут"},
		{time.Minute, "1 minute", "1 минуту"},
		{2 * time.Minute, "2 minutes", "2 минуты"},
		{21 * time.Minute, "21 minutes", "21 минуту"},
		{90 * time.Minute, "1 hour 30 minutes", "1 час 30 минут"},
		{72 * time.Hour, "3 days", "3 дня"},
		{30 * 24 * time.Hour, "30 days", "30 дней"},
		{25 * time.Hour, "1 day 1 hour", "1 день 1 час"},
		{42 * time.Second, "42 seconds", "42 секунды"},
		{11 * time.Second, "11 seconds", "11 секунд"},
		{time.Second, "1 second", "1 секунду"},
		{0, "1 second", "1 секунду"},
		{1500 * time.Millisecond, "2 seconds", "2 секунды"},
		{90 * time.Second, "1 minute 30 seconds", "1 минуту 30 секунд"},
		// The smaller unit rounds up, and carries.
		{time.Hour + 59*time.Minute + 30*time.Second, "2 hours", "2 часа"},
		{5*time.Minute + 1*time.Second, "5 minutes 1 second", "5 минут 1 секунду"},
	} {
		if got := en.Duration(tc.d); got != tc.en {
			t.Errorf("en %v = %q, want %q", tc.d, got, tc.en)
		}
		if got := ru.Duration(tc.d); got != tc.ru {
			t.Errorf("ru %v = %q, want %q", tc.d, got, tc.ru)
		}
	}
	// A duration argument of a message is written out, in either place.
	if got := en.Tf("err.cooldown", 42*time.Second); got != "You can request a new code in 42 seconds." {
		t.Errorf("err.cooldown = %q", got)
	}
	if got := ru.Tf("remember.label", 30*24*time.Hour); got != "Запомнить это устройство на 30 дней" {
		t.Errorf("remember.label = %q", got)
	}
}
