package faults

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func fmtDuration(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}

// WriteTable writes the results as a Markdown table, the reasons of the
// failed rows under it, and the summary line `faults: N passed, M failed`.
// It returns the number of failed rows.
func WriteTable(w io.Writer, results []Result) int {
	header := []string{"scenario", "result", "acknowledged", "lost", "duplicates", "lockouts 1/1", "unavailability", "alert delay", "time"}
	rows := [][]string{header}
	failed := 0
	for _, r := range results {
		result := "pass"
		if !r.Passed {
			result = "FAIL"
			failed++
		}
		lockouts := "-"
		if r.Lockouts > 0 {
			lockouts = fmt.Sprintf("%d/%d", r.LockoutsOK, r.Lockouts)
		}
		rows = append(rows, []string{r.Scenario, result, fmt.Sprint(r.Acknowledged), fmt.Sprint(r.Lost), fmt.Sprint(r.Duplicates),
			lockouts, fmtDuration(r.Unavailability), fmtDuration(r.AlertDelay), fmt.Sprintf("%.0f s", r.Elapsed.Seconds())})
	}
	widths := make([]int, len(header))
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len([]rune(c)))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range cells {
			fmt.Fprintf(&b, " %-*s |", widths[i], c)
		}
		fmt.Fprintln(w, b.String())
	}
	line(rows[0])
	sep := make([]string, len(header))
	for i := range sep {
		sep[i] = strings.Repeat("-", widths[i])
	}
	line(sep)
	for _, row := range rows[1:] {
		line(row)
	}
	for _, r := range results {
		if r.Passed {
			continue
		}
		fmt.Fprintf(w, "\n%s failed:\n", r.Scenario)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "  - %s\n", n)
		}
	}
	fmt.Fprintf(w, "\nfaults: %d passed, %d failed\n", len(results)-failed, failed)
	return failed
}
