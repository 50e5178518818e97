package main

// The mails about an account give times in the person's time zone, which
// the browser names ("Europe/Berlin") and keygate checks with
// time.LoadLocation. The zone database is built in so that this works the
// same wherever the static binary runs, with or without the host's
// /usr/share/zoneinfo (a minimal container image may lack it); about
// 450 KB. The host's copy, when there is one, is still read first.
import _ "time/tzdata"
