package cli

// The terminal view of reserve top, with tview: a table that tview
// scrolls, a text view for the changes, an input field for the filter.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gdamore/tcell/v2"
	"github.com/rivo/tview"
)

// topLogLines bounds the changes pane.
const topLogLines = 1000

// topUI is the terminal view. Its fields below app are the UI goroutine's:
// tview runs every handler and queued update there.
type topUI struct {
	app      *tview.Application
	header   *tview.TextView
	table    *tview.Table
	changes  *tview.TextView
	filter   *tview.InputField
	help     *tview.TextView
	runEnded chan struct{} // closed when app.Run returned

	title   string // the deployment, --match and --interval
	cause   causeFunc
	view    topView
	sortBy  topSort
	reverse bool
	match   topFilter
	editing bool // the filter has the focus
	logged  bool // the changes pane has a line
	quit    func()
}

// Colours of the rows and of the changes.
var (
	rowColors = map[rowKind]tcell.Color{
		rowHeld: tcell.ColorWhite, rowSemaphore: tcell.ColorAqua, rowNoMajority: tcell.ColorYellow,
		rowPermit: tcell.ColorAqua, rowWaiter: tcell.ColorSilver, rowServer: tcell.ColorSilver, rowError: tcell.ColorRed,
	}
	changeColors = map[changeKind]string{
		changeAcquired: "green", changeReleased: "aqua", changeExpired: "yellow",
		changeTakenOver: "fuchsia", changeDeleted: "red",
	}
)

func newTopUI(title string, cause causeFunc, quit func()) *topUI {
	// One frame for the focused primitive and the others: the focus is
	// the table's but while the filter is typed, which its colour shows.
	b := &tview.Borders
	b.HorizontalFocus, b.VerticalFocus = b.Horizontal, b.Vertical
	b.TopLeftFocus, b.TopRightFocus, b.BottomLeftFocus, b.BottomRightFocus = b.TopLeft, b.TopRight, b.BottomLeft, b.BottomRight
	u := &topUI{
		app:      tview.NewApplication(),
		header:   tview.NewTextView().SetDynamicColors(true).SetWrap(false),
		table:    tview.NewTable().SetFixed(1, 0).SetSelectable(false, false),
		changes:  tview.NewTextView().SetDynamicColors(true).SetScrollable(true).SetMaxLines(topLogLines).SetWordWrap(true),
		filter:   tview.NewInputField().SetLabel("filter: ").SetPlaceholder("/ to type").SetFieldWidth(30),
		help:     tview.NewTextView().SetDynamicColors(true).SetWrap(false),
		runEnded: make(chan struct{}),
		title:    title,
		cause:    cause,
		quit:     quit,
	}
	u.table.SetBorder(true).SetTitle(" held ").SetTitleAlign(tview.AlignLeft)
	u.changes.SetBorder(true).SetTitle(" changes ").SetTitleAlign(tview.AlignLeft)
	u.filter.SetFieldStyle(tcell.StyleDefault.Background(tcell.ColorDarkBlue).Foreground(tcell.ColorWhite)).
		SetPlaceholderStyle(tcell.StyleDefault.Background(tcell.ColorDarkBlue).Foreground(tcell.ColorSilver)).
		SetLabelColor(tcell.ColorYellow)
	u.filter.SetChangedFunc(func(text string) {
		u.match = newTopFilter(text)
		u.render()
	})
	u.filter.SetDoneFunc(func(key tcell.Key) {
		if key == tcell.KeyEscape {
			u.filter.SetText("") // calls the changed func
		}
		u.editing = false
		u.app.SetFocus(u.table)
		u.render()
	})
	u.help.SetText(u.helpText())
	bottom := tview.NewFlex().
		AddItem(u.filter, 40, 0, false).
		AddItem(u.help, 0, 1, false)
	root := tview.NewFlex().SetDirection(tview.FlexRow).
		AddItem(u.header, 2, 0, false).
		AddItem(u.table, 0, 2, true).
		AddItem(u.changes, 0, 1, false).
		AddItem(bottom, 1, 0, false)
	u.app.SetRoot(root, true).SetFocus(u.table)
	u.app.SetInputCapture(u.key)
	u.render()
	return u
}

// key handles the keys of the view, before the focused primitive: the
// table scrolls with the others, the filter takes them while it is typed.
func (u *topUI) key(ev *tcell.EventKey) *tcell.EventKey {
	if ev.Key() == tcell.KeyCtrlC {
		u.quit()
		return nil
	}
	if u.editing {
		return ev
	}
	switch ev.Key() {
	case tcell.KeyEscape:
		u.filter.SetText("")
		return nil
	case tcell.KeyRune:
		switch ev.Rune() {
		case 'q', 'Q':
			u.quit()
		case 's':
			u.sortBy = (u.sortBy + 1) % numSorts
			u.render()
		case 'r':
			u.reverse = !u.reverse
			u.render()
		case '/':
			u.editing = true
			u.app.SetFocus(u.filter)
			u.render()
		default:
			return ev
		}
		return nil
	}
	return ev
}

func (u *topUI) helpText() string {
	keys := [][2]string{{"s", "sort"}, {"r", "reverse"}, {"/", "filter"}, {"Esc", "clear filter"}, {"↑↓", "scroll"}, {"q", "quit"}}
	if u.editing {
		keys = [][2]string{{"Enter", "keep filter"}, {"Esc", "clear filter"}, {"Ctrl-C", "quit"}}
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = "[yellow::b]" + k[0] + "[-::-] " + k[1]
	}
	return " " + strings.Join(parts, "  ")
}

// update shows v, and adds changes and notes (what reserve said) to the
// changes pane.
func (u *topUI) update(v topView, changes []topChange, notes []string) {
	for _, n := range notes {
		u.logLine(time.Now(), "[silver]"+tview.Escape(strings.TrimPrefix(n, "reserve: "))+"[-]")
	}
	for _, c := range changes {
		line := fmt.Sprintf("[%s]%-10s[-]  [::b]%s[::-]  %s", changeColors[c.kind], c.kind, tview.Escape(c.label), tview.Escape(c.holder))
		if c.from != "" {
			line += " from " + tview.Escape(c.from)
		}
		if c.note != "" {
			line += " [silver](" + tview.Escape(c.note) + ")[-]"
		}
		u.logLine(c.at, line)
	}
	u.view = v
	u.render()
}

// logLine adds a line to the changes pane, at its time.
func (u *topUI) logLine(at time.Time, text string) {
	// The newline goes before the line, not after: a last empty line
	// would take a row of the pane.
	if u.logged {
		fmt.Fprint(u.changes, "\n")
	}
	u.logged = true
	fmt.Fprintf(u.changes, "[gray]%s[-]  %s", at.Format("15:04:05"), text)
	u.changes.ScrollToEnd()
}

// render fills the header and the table from the view, sorted and
// filtered.
func (u *topUI) render() {
	groups := topGroups(u.view.infos, u.view.items, u.cause, u.view.at)
	sortGroups(groups, u.sortBy, u.reverse)
	u.table.Clear()
	for col, name := range topColumns {
		if col == u.sortBy.column() {
			name += " " + u.sortBy.arrow(u.reverse)
		}
		u.table.SetCell(0, col, tview.NewTableCell(name+"  ").SetTextColor(tcell.ColorYellow).
			SetAttributes(tcell.AttrBold).SetSelectable(false))
	}
	row, shown, held, queued := 1, 0, 0, 0
	for _, g := range groups {
		held += len(g.holders())
		queued += g.queued()
		if !u.match.match(g) {
			continue
		}
		shown++
		for _, r := range g.rows {
			for col, text := range r.cells {
				cell := tview.NewTableCell(text + "  ").SetTextColor(rowColors[r.kind])
				if col == 0 && (r.kind == rowHeld || r.kind == rowSemaphore || r.kind == rowNoMajority) {
					cell.SetAttributes(tcell.AttrBold)
				}
				u.table.SetCell(row, col, cell)
			}
			row++
		}
	}
	status := fmt.Sprintf("%d held, %d queued", held, queued)
	if u.match.text != "" {
		status += fmt.Sprintf(" — %d of %d %s match the filter", shown, len(groups), plural(len(groups), "resource", "resources"))
	}
	if u.view.problem != "" {
		status = "[red]" + tview.Escape(u.view.problem) + "[-]"
	} else if u.view.at.IsZero() {
		status = "reading…"
	}
	at := ""
	if !u.view.at.IsZero() {
		at = u.view.at.Format("15:04:05")
	}
	u.header.SetText(fmt.Sprintf("[::b]reserve top[::-]  %s  [gray]%s[-]\n%s   [gray]sorted by[-] %s, %s",
		tview.Escape(u.title), at, status, u.sortBy, u.sortBy.order(u.reverse)))
	u.help.SetText(u.helpText())
}

// holders returns the holders of g's rows: its own, or its permits'.
func (g topGroup) holders() []string {
	var out []string
	for _, r := range g.rows {
		if r.kind == rowHeld || r.kind == rowPermit {
			out = append(out, r.cells[1])
		}
	}
	return out
}

// queued returns how many workers queue for g's resource.
func (g topGroup) queued() int {
	n := 0
	for _, r := range g.rows {
		if r.kind == rowWaiter {
			n++
		}
	}
	return n
}

// post runs f in the UI goroutine and redraws, unless the view has ended.
func (u *topUI) post(f func()) {
	done := make(chan struct{})
	go func() {
		// QueueUpdateDraw waits for the UI goroutine. Should the view end
		// on its own (its terminal gone), this goroutine is left behind
		// as reserve exits.
		u.app.QueueUpdateDraw(f)
		close(done)
	}()
	select {
	case <-done:
	case <-u.runEnded:
	}
}

// runView runs the terminal view until q, Ctrl-C or a signal.
func (w *topWatch) runView(parent context.Context, sink *topSink) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	u := newTopUI(fmt.Sprintf("%s  match %s  every %v", w.f.where, w.o.match, w.o.interval), w.f.serverCause, cancel)
	u.logLine(time.Now(), "[silver]"+tview.Escape("watching: "+w.sources())+"[-]")

	// The scans start at the first draw, once the terminal is set up: a
	// terminal that cannot be set up ends Run before any update waits
	// for it. The view stops once the scans have ended (q, Ctrl-C or a
	// signal end ctx), so that no update waits for a view gone.
	var (
		mu       sync.Mutex
		started  bool
		stopping bool
		scans    sync.WaitGroup
	)
	u.app.SetBeforeDrawFunc(func(tcell.Screen) bool {
		mu.Lock()
		defer mu.Unlock()
		if started || stopping {
			return false
		}
		started = true
		scans.Add(1)
		go func() {
			defer scans.Done()
			w.loop(ctx, func(v topView, changes []topChange) bool {
				notes := sink.take()
				u.post(func() { u.update(v, changes, notes) })
				return true
			})
		}()
		return false
	})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		mu.Lock()
		stopping = true
		mu.Unlock()
		scans.Wait()
		u.app.Stop()
	}()
	err := u.app.Run()
	close(u.runEnded)
	cancel()
	<-stopped
	if err != nil {
		return &exitError{code: ExitFailure, err: fmt.Errorf("cannot use the terminal: %w (reserve top | cat prints the table once)", err)}
	}
	return interrupted(parent)
}
