// Package filewatch reloads what a set of files holds when the files
// change. It is the one watcher behind policy.Watcher (a policy file) and
// certs.FileSource (an SVID, its key and trust bundles).
//
// It watches directories, not files, so that a file replaced by a rename
// (an editor's or an atomic write) is seen, and it follows symlinks all the
// way: it watches the directory holding each link on the way to a file
// (so a re-pointed link is seen, a Kubernetes ConfigMap's ..data swap
// included) and the directory the file really is in (so an edit of a
// link's target is seen). Every change resolves the links again, and the
// watches move with them.
//
// A change is applied only once it has settled: after a quiet settle
// interval, two reads one settle interval apart must agree, in their bytes
// and in the size, modification time and real path of every file, or the
// reads start over. A file still being written is therefore never applied
// unless its writer pauses for longer than that; replacing files atomically
// (write a temporary file and rename it, as a ConfigMap does) is the only
// way to be sure.
package filewatch
