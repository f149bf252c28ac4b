package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/thecolonycc/colonyauth"
)

const statusUsage = `usage: colonytoken status [--json] [flags]

What the host record says, read from the cache directory (no broker
needed, nothing sent): answers counted in the last hour and when the next
slot frees, a 429 hold, an outage (since, tries, next probe, prober), the
keys with a live record, and whether coordination works. --json prints the
same as colonytoken serve's GET /-/status, with stable names.

Flags:
`

// status prints the host record of the base URL.
func status(args []string, e env) int {
	fs := flag.NewFlagSet("colonytoken status", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() { fmt.Fprint(e.stderr, statusUsage); fs.PrintDefaults() }
	asJSON := fs.Bool("json", false, "print JSON")
	baseURL := fs.String("base-url", "", "the Colony's base `URL` (default $COLONY_BASE_URL, else "+colonyauth.DefaultBaseURL+")")
	cacheDir := fs.String("cache-dir", "", "the host's cache `DIR` (default os.UserCacheDir()/colonyauth)")
	if code, ok := parseFlags(fs, args, e.stderr, ""); !ok {
		return code
	}
	cache, err := colonyauth.NewFileCache(*cacheDir)
	if err != nil {
		fmt.Fprintln(e.stderr, "colonytoken status: no cache directory:", err)
		return exitUsage
	}
	now := time.Now()
	st := colonyauth.ReadHostStatus(cache, firstOf(*baseURL, e.getenv("COLONY_BASE_URL"), colonyauth.DefaultBaseURL), colonyauth.DefaultHostLimit, now)
	if *asJSON {
		out, _ := json.MarshalIndent(st, "", "  ")
		fmt.Fprintln(e.stdout, string(out))
	} else {
		printStatus(e.stdout, st, now)
	}
	return exitOK
}

// printStatus is the human table of st.
func printStatus(w io.Writer, st colonyauth.HostStatus, now time.Time) {
	when := func(t time.Time) string {
		return fmt.Sprintf("%s (in %v)", t.Local().Format("15:04:05"), t.Sub(now).Round(time.Second))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "base URL\t%s\n", st.BaseURL)
	answers := fmt.Sprintf("%d of %d in the last hour", st.Answers, st.Limit)
	if !st.NextSlot.IsZero() {
		answers += "; the next slot frees at " + when(st.NextSlot)
	}
	fmt.Fprintf(tw, "answers\t%s\n", answers)
	hold := "none"
	if !st.HoldUntil.IsZero() {
		hold = "until " + when(st.HoldUntil)
	}
	fmt.Fprintf(tw, "429 hold\t%s\n", hold)
	outage := "none"
	if !st.OutageSince.IsZero() {
		outage = fmt.Sprintf("since %s, %d failed attempts, next probe %s", st.OutageSince.Local().Format("15:04:05"), st.Tries, when(st.NextProbe))
		if st.Prober != "" {
			outage += ", by " + st.Prober
		}
		if st.LastFailure != "" {
			outage += "; last: " + st.LastFailure
		}
	}
	fmt.Fprintf(tw, "outage\t%s\n", outage)
	fmt.Fprintf(tw, "keys\t%d with a live record\n", st.Keys)
	coord := "working"
	if !st.Coordinating {
		coord = "not working: " + st.Problem
	}
	fmt.Fprintf(tw, "coordination\t%s\n", coord)
	tw.Flush()
}
