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

// server is one configuration's server process.
type server struct {
	cfg   config
	addr  string
	pid   string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string   // stdout, line by line
	done  chan struct{} // closed once the process has exited
	err   error         // its exit status, set before done is closed
}

// startServer starts exe as the server of cfg with env and waits, at most
// until ctx ends, for it to say where it listens.
func startServer(ctx context.Context, exe string, cfg config, env []string) (*server, error) {
	cmd := exec.Command(exe)
	cmd.Env = env
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("meshbench: start %s: %w", cfg, err)
	}
	s := &server{cfg: cfg, cmd: cmd, stdin: stdin, pid: strconv.Itoa(cmd.Process.Pid), lines: make(chan string, 1), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
		s.err = cmd.Wait()
		close(s.done)
	}()
	line, err := s.reply(ctx, "ready ")
	if err != nil {
		s.stop()
		return nil, err
	}
	s.addr = line
	return s, nil
}

// reply waits for the server's next line, which must start with prefix,
// and returns the rest.
func (s *server) reply(ctx context.Context, prefix string) (string, error) {
	select {
	case line, ok := <-s.lines:
		if !ok {
			<-s.done
			return "", fmt.Errorf("meshbench: server %s exited: %v", s.cfg, s.err)
		}
		rest, found := strings.CutPrefix(line, prefix)
		if !found {
			return "", fmt.Errorf("meshbench: server %s said %q, want a line starting %q", s.cfg, line, prefix)
		}
		return rest, nil
	case <-ctx.Done():
		return "", fmt.Errorf("meshbench: server %s: no %q line: %w", s.cfg, strings.TrimSpace(prefix), ctx.Err())
	}
}

// usage is what a server has used so far.
type usage struct {
	cpu                  time.Duration
	allocObjs, allocSize uint64
}

func (s *server) usage(ctx context.Context) (usage, error) {
	if _, err := io.WriteString(s.stdin, "stats\n"); err != nil {
		return usage{}, fmt.Errorf("meshbench: server %s: %w", s.cfg, err)
	}
	line, err := s.reply(ctx, "stats ")
	if err != nil {
		return usage{}, err
	}
	var u usage
	if _, err := fmt.Sscan(line, &u.allocObjs, &u.allocSize); err != nil {
		return usage{}, fmt.Errorf("meshbench: server %s: stats %q: %w", s.cfg, line, err)
	}
	u.cpu, err = cpuTime(s.pid)
	return u, err
}

// stop closes the server's stdin, which makes it shut down, and waits up
// to 10s for it to exit before killing it.
func (s *server) stop() error {
	_ = s.stdin.Close()
	go func() {
		for range s.lines { // drain, so that the reader reaches Wait
		}
	}()
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-s.done:
		if s.err != nil {
			return fmt.Errorf("meshbench: server %s: %w", s.cfg, s.err)
		}
		return nil
	case <-timer.C:
		_ = s.cmd.Process.Kill()
		<-s.done
		return fmt.Errorf("meshbench: server %s did not stop within 10s: killed", s.cfg)
	}
}
