package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// which is 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// cpuTime returns the user plus system CPU time of process pid so far,
// from /proc/PID/stat (fields 14 and 15).
func cpuTime(pid string) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0, fmt.Errorf("meshbench: server CPU: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields that follow start after the last ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, fmt.Errorf("meshbench: /proc/%s/stat: no ')' in %q", pid, b)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("meshbench: /proc/%s/stat: %d fields after the name, want at least 13", pid, len(f))
	}
	var ticks int64
	for _, s := range f[11:13] { // utime, stime
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("meshbench: /proc/%s/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// proc is one server process: this binary in its server role, which
// reports its heap allocations when asked, or `shop serve NAME`, which
// does not.
type proc struct {
	name  string // e.g. "grpc-go/off", "placeorder/off orders"
	addr  string // where it listens
	pid   string
	cmd   *exec.Cmd
	stdin io.WriteCloser // this binary's servers: the driver's requests ("stats"); nil for shop serve
	lines chan string    // this binary's servers: stdout, line by line
	log   string         // the file its logs go to; "": the driver's stderr
	done  chan struct{}  // closed once the process has exited
	err   error          // its exit status, set before done is closed
}

// startServer starts exe (this binary) as the server name with env, its
// stderr going to logFile ("": the driver's stderr), and waits, at most
// until ctx ends, for it to say where it listens.
func startServer(ctx context.Context, exe, name string, env []string, logFile string) (*proc, error) {
	cmd := exec.Command(exe)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	if logFile != "" {
		f, err := os.Create(logFile)
		if err != nil {
			return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
		}
		defer f.Close() // the child has its own copy once started
		cmd.Stderr = f
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, log: logFile, pid: strconv.Itoa(cmd.Process.Pid), lines: make(chan string, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		p.err = cmd.Wait()
		close(p.done)
	}()
	line, err := p.reply(ctx, "ready ")
	if err != nil {
		_ = p.stop()
		return nil, err
	}
	p.addr = line
	return p, nil
}

// startShop starts `BIN ARGS` (shop serve NAME ...) in dir with env, its
// stdout and stderr going to logFile, and waits, at most until ctx ends,
// for its "serving" log line, which says where it listens. If the driver
// dies, the process gets SIGTERM (on Linux).
func startShop(ctx context.Context, bin, dir, name string, args, env []string, logFile string) (*proc, error) {
	f, err := os.Create(logFile)
	if err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
	}
	defer f.Close() // the child has its own copy once started
	cmd := exec.Command(bin, args...)
	cmd.Dir, cmd.Env, cmd.Stdout, cmd.Stderr = dir, env, f, f
	setParentDeathSignal(cmd)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logFile, pid: strconv.Itoa(cmd.Process.Pid), done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if addr, ok := servingAddr(logFile); ok {
			p.addr = addr
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("meshbench: server %s exited before serving: %v%s", name, p.err, p.logTail())
		case <-ctx.Done():
			_ = p.stop()
			return nil, fmt.Errorf("meshbench: server %s: no \"serving\" log line: %w%s", name, ctx.Err(), p.logTail())
		case <-tick.C:
		}
	}
}

// servingAddr finds, in the log of a `shop serve` process (slog's text
// format), the address of its "serving" line:
// `time=... level=INFO msg=serving service=inventory addr=127.0.0.1:40123`.
func servingAddr(logFile string) (string, bool) {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return "", false
	}
	for line := range strings.Lines(string(b)) {
		if !strings.Contains(line, " msg=serving ") {
			continue
		}
		for f := range strings.FieldsSeq(line) {
			if addr, ok := strings.CutPrefix(f, "addr="); ok {
				return addr, true
			}
		}
	}
	return "", false
}

// logTail is the end of the process's log, for an error message: its last
// three lines, each clipped, on one line; "" when it logs to the driver's
// stderr or logged nothing.
func (p *proc) logTail() string {
	if p.log == "" {
		return ""
	}
	b, err := os.ReadFile(p.log)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	lines = lines[max(0, len(lines)-3):]
	for i, l := range lines {
		if len(l) > 300 {
			lines[i] = l[:300] + "..."
		}
	}
	if len(lines) == 1 && lines[0] == "" {
		return ""
	}
	return " (its log ends: " + strings.Join(lines, " | ") + ")"
}

// reply waits for the server's next line, which must start with prefix,
// and returns the rest.
func (p *proc) reply(ctx context.Context, prefix string) (string, error) {
	select {
	case line, ok := <-p.lines:
		if !ok {
			<-p.done
			return "", fmt.Errorf("meshbench: server %s exited: %v%s", p.name, p.err, p.logTail())
		}
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			return "", fmt.Errorf("meshbench: server %s said %q, want a line starting %q", p.name, line, prefix)
		}
		return rest, nil
	case <-ctx.Done():
		return "", fmt.Errorf("meshbench: server %s: no %q line: %w", p.name, strings.TrimSpace(prefix), ctx.Err())
	}
}

// usage is what a server (or the servers of a configuration, summed) has
// used so far.
type usage struct {
	cpu                  time.Duration
	allocObjs, allocSize uint64
	allocs               bool            // the allocations are known: every process is this binary, which reports them
	perProc              []time.Duration // a deployment's: each process's CPU, in the order of its procs
}

func (p *proc) usage(ctx context.Context) (usage, error) {
	var u usage
	if p.stdin != nil {
		if _, err := io.WriteString(p.stdin, "stats\n"); err != nil {
			return usage{}, fmt.Errorf("meshbench: server %s: %w", p.name, err)
		}
		line, err := p.reply(ctx, "stats ")
		if err != nil {
			return usage{}, err
		}
		if _, err := fmt.Sscan(line, &u.allocObjs, &u.allocSize); err != nil {
			return usage{}, fmt.Errorf("meshbench: server %s: stats %q: %w", p.name, line, err)
		}
		u.allocs = true
	}
	var err error
	u.cpu, err = cpuTime(p.pid)
	return u, err
}

// stop stops the server, by closing its stdin (this binary) or with
// SIGTERM (shop serve), either of which makes it shut down gracefully
// (flushing the spans still batched), and waits up to 10s for it to exit
// before killing it.
func (p *proc) stop() error {
	if p.stdin != nil {
		_ = p.stdin.Close()
		go func() {
			for range p.lines { // drain, so that the reader reaches Wait
			}
		}()
	} else {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-p.done:
		if p.err != nil {
			return fmt.Errorf("meshbench: server %s: %w%s", p.name, p.err, p.logTail())
		}
		return nil
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("meshbench: server %s did not stop within 10s: killed", p.name)
	}
}
