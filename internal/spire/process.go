package spire

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// stopTimeout is how long a child gets to stop after SIGTERM before it is
// killed.
const stopTimeout = 10 * time.Second

// Process is a child process whose output goes to a writer, remembering its
// last line for error messages. On Linux the kernel stops it when this
// process dies, so that a crash leaves no child behind.
type Process struct {
	name string
	cmd  *exec.Cmd
	last *lastLine
	done chan struct{} // closed once the process has exited
	err  error         // the exit error, set before done is closed
}

// StartProcess starts path with args and env (added to this process's
// environment) as the child called name (in messages); its stdout and
// stderr go to out.
func StartProcess(name, path string, args, env []string, out io.Writer) (*Process, error) {
	last := &lastLine{}
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	w := io.MultiWriter(out, last)
	cmd.Stdout, cmd.Stderr = w, w
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("spire: start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, last: last, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process ID.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done returns a channel that is closed once the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitError describes how the process ended, with its last line of
// output: "spire: NAME exited (STATUS): LINE". Call it once [Process.Done]
// is closed.
func (p *Process) ExitError() error {
	msg := fmt.Sprintf("spire: %s exited (%v)", p.name, p.err)
	if l := p.last.get(); l != "" {
		msg += ": " + l
	}
	return errors.New(msg)
}

// Stop sends SIGTERM, waits up to 10s, then kills. It returns nil when the
// process stopped because of the signal, or had already exited.
func (p *Process) Stop() error {
	if p.Exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("spire: %s did not stop within %s of SIGTERM; killed", p.name, stopTimeout)
	}
}

// lastLine is an io.Writer that keeps the last non-empty line written.
type lastLine struct {
	mu      sync.Mutex
	partial []byte
	line    string
}

func (l *lastLine) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		if s := strings.TrimSpace(string(l.partial[:i])); s != "" {
			l.line = s
		}
		l.partial = l.partial[i+1:]
	}
	return len(b), nil
}

func (l *lastLine) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s := strings.TrimSpace(string(l.partial)); s != "" {
		return s
	}
	return l.line
}
