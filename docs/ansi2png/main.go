// Command ansi2png renders a terminal screen, as `tmux capture-pane -e -p`
// prints it (text with SGR colour sequences), to a PNG, in Go Mono. It is
// docs/top-screenshot.sh's, for docs/top.png:
//
//	tmux capture-pane -e -p -t 0 | go run -C docs/ansi2png . -o ../top.png
//
// It knows the SGR attributes that tmux prints: bold, dim, reverse, the 16
// colours, the 256 and 24-bit ones; every character takes one cell.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/image/font"
	"golang.org/x/image/font/gofont/gomono"
	"golang.org/x/image/font/gofont/gomonobold"
	"golang.org/x/image/font/opentype"
	"golang.org/x/image/math/fixed"
)

// The terminal's default colours, and its 16 colours (xterm's, a little
// softened).
var (
	defaultFG = color.RGBA{0xd0, 0xd0, 0xd0, 0xff}
	defaultBG = color.RGBA{0x1c, 0x1c, 0x1c, 0xff}
	basic     = [16]color.RGBA{
		{0x1c, 0x1c, 0x1c, 0xff}, {0xcd, 0x31, 0x31, 0xff}, {0x0d, 0xbc, 0x79, 0xff}, {0xe5, 0xe5, 0x10, 0xff},
		{0x24, 0x72, 0xc8, 0xff}, {0xbc, 0x3f, 0xbc, 0xff}, {0x11, 0xa8, 0xcd, 0xff}, {0xb0, 0xb0, 0xb0, 0xff},
		{0x76, 0x76, 0x76, 0xff}, {0xf1, 0x4c, 0x4c, 0xff}, {0x23, 0xd1, 0x8b, 0xff}, {0xf5, 0xf5, 0x43, 0xff},
		{0x3b, 0x8e, 0xea, 0xff}, {0xd6, 0x70, 0xd6, 0xff}, {0x29, 0xb8, 0xdb, 0xff}, {0xff, 0xff, 0xff, 0xff},
	}
)

// cell is one character of the screen, with its attributes.
type cell struct {
	r       rune
	fg, bg  color.RGBA
	bold    bool
	dim     bool
	reverse bool
}

// pen is the attributes that the SGR sequences set.
type pen struct {
	fg, bg             color.RGBA
	bold, dim, reverse bool
}

func main() {
	out := flag.String("o", "screen.png", "the PNG `file` to write")
	size := flag.Float64("size", 15, "the font size, in points at 72 dpi (pixels)")
	flag.Parse()
	screen, err := parse(os.Stdin)
	if err != nil {
		fail(err)
	}
	img, err := render(screen, *size)
	if err != nil {
		fail(err)
	}
	f, err := os.Create(*out)
	if err != nil {
		fail(err)
	}
	if err := png.Encode(f, img); err != nil {
		fail(err)
	}
	if err := f.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "ansi2png:", err)
	os.Exit(1)
}

// parse reads the screen's lines and their SGR sequences.
func parse(r io.Reader) ([][]cell, error) {
	var lines [][]cell
	p := pen{fg: defaultFG, bg: defaultBG}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line []cell
		rs := []rune(sc.Text())
		for i := 0; i < len(rs); i++ {
			if rs[i] == 0x1b && i+1 < len(rs) && rs[i+1] == '[' {
				j := i + 2
				for j < len(rs) && (rs[j] < 0x40 || rs[j] > 0x7e) {
					j++
				}
				if j < len(rs) && rs[j] == 'm' {
					p.sgr(string(rs[i+2 : j]))
				}
				i = j
				continue
			}
			line = append(line, cell{r: rs[i], fg: p.fg, bg: p.bg, bold: p.bold, dim: p.dim, reverse: p.reverse})
		}
		lines = append(lines, line)
	}
	return lines, sc.Err()
}

// sgr applies the parameters of one SGR sequence.
func (p *pen) sgr(params string) {
	if params == "" {
		params = "0"
	}
	var ns []int
	for _, s := range strings.FieldsFunc(params, func(r rune) bool { return r == ';' || r == ':' }) {
		n, _ := strconv.Atoi(s)
		ns = append(ns, n)
	}
	for i := 0; i < len(ns); i++ {
		switch n := ns[i]; {
		case n == 0:
			*p = pen{fg: defaultFG, bg: defaultBG}
		case n == 1:
			p.bold = true
		case n == 2:
			p.dim = true
		case n == 7:
			p.reverse = true
		case n == 22:
			p.bold, p.dim = false, false
		case n == 27:
			p.reverse = false
		case n >= 30 && n <= 37:
			p.fg = basic[n-30]
		case n == 39:
			p.fg = defaultFG
		case n >= 40 && n <= 47:
			p.bg = basic[n-40]
		case n == 49:
			p.bg = defaultBG
		case n >= 90 && n <= 97:
			p.fg = basic[n-90+8]
		case n >= 100 && n <= 107:
			p.bg = basic[n-100+8]
		case (n == 38 || n == 48) && i+2 < len(ns) && ns[i+1] == 5:
			c := xterm256(ns[i+2])
			i += 2
			if n == 38 {
				p.fg = c
			} else {
				p.bg = c
			}
		case (n == 38 || n == 48) && i+4 < len(ns) && ns[i+1] == 2:
			c := color.RGBA{uint8(ns[i+2]), uint8(ns[i+3]), uint8(ns[i+4]), 0xff}
			i += 4
			if n == 38 {
				p.fg = c
			} else {
				p.bg = c
			}
		}
	}
}

// xterm256 returns colour n of xterm's 256.
func xterm256(n int) color.RGBA {
	switch {
	case n < 16:
		return basic[n]
	case n < 232:
		n -= 16
		level := func(v int) uint8 {
			if v == 0 {
				return 0
			}
			return uint8(55 + 40*v)
		}
		return color.RGBA{level(n / 36), level(n / 6 % 6), level(n % 6), 0xff}
	case n < 256:
		v := uint8(8 + 10*(n-232))
		return color.RGBA{v, v, v, 0xff}
	}
	return defaultFG
}

// render draws the screen, one cell per character.
func render(lines [][]cell, size float64) (image.Image, error) {
	faces := make([]font.Face, 2)
	for i, ttf := range [][]byte{gomono.TTF, gomonobold.TTF} {
		f, err := opentype.Parse(ttf)
		if err != nil {
			return nil, err
		}
		if faces[i], err = opentype.NewFace(f, &opentype.FaceOptions{Size: size, DPI: 72, Hinting: font.HintingFull}); err != nil {
			return nil, err
		}
	}
	adv, _ := faces[0].GlyphAdvance('M')
	cw := adv.Ceil()
	m := faces[0].Metrics()
	ch := (m.Ascent + m.Descent).Ceil() + 2
	cols := 0
	for _, l := range lines {
		cols = max(cols, len(l))
	}
	const pad = 12
	img := image.NewRGBA(image.Rect(0, 0, cols*cw+2*pad, len(lines)*ch+2*pad))
	draw.Draw(img, img.Bounds(), image.NewUniform(defaultBG), image.Point{}, draw.Src)
	for y, l := range lines {
		for x, c := range l {
			fg, bg := c.fg, c.bg
			if c.reverse {
				fg, bg = bg, fg
			}
			if c.dim {
				fg = color.RGBA{uint8(int(fg.R) * 2 / 3), uint8(int(fg.G) * 2 / 3), uint8(int(fg.B) * 2 / 3), 0xff}
			}
			r := image.Rect(pad+x*cw, pad+y*ch, pad+(x+1)*cw, pad+(y+1)*ch)
			if bg != defaultBG {
				draw.Draw(img, r, image.NewUniform(bg), image.Point{}, draw.Src)
			}
			if c.r == ' ' {
				continue
			}
			face := faces[0]
			if c.bold {
				face = faces[1]
			}
			if boxLine(img, r, c.r, fg) {
				continue
			}
			d := font.Drawer{Dst: img, Src: image.NewUniform(fg), Face: face,
				Dot: fixed.P(r.Min.X, r.Min.Y+1+m.Ascent.Ceil())}
			d.DrawString(string(c.r))
		}
	}
	return img, nil
}

// boxLine draws the box-drawing characters of tview's frames as lines
// across the whole cell, so that they join (a font's glyphs leave gaps
// between lines), and reports whether c is one of them.
func boxLine(img *image.RGBA, r image.Rectangle, c rune, fg color.RGBA) bool {
	// The arms of each character: left, right, up, down.
	arms, ok := map[rune][4]bool{
		'─': {true, true, false, false}, '│': {false, false, true, true},
		'┌': {false, true, false, true}, '┐': {true, false, false, true},
		'└': {false, true, true, false}, '┘': {true, false, true, false},
	}[c]
	if !ok {
		return false
	}
	cx, cy := (r.Min.X+r.Max.X)/2, (r.Min.Y+r.Max.Y)/2
	src := image.NewUniform(fg)
	for i, rect := range []image.Rectangle{
		image.Rect(r.Min.X, cy, cx+1, cy+1), image.Rect(cx, cy, r.Max.X, cy+1),
		image.Rect(cx, r.Min.Y, cx+1, cy+1), image.Rect(cx, cy, cx+1, r.Max.Y),
	} {
		if arms[i] {
			draw.Draw(img, rect, src, image.Point{}, draw.Over)
		}
	}
	return true
}
