// Command docker-context lists the files `docker build` would send as the build context of a
// directory: every file, minus what its .dockerignore excludes, decided by the same matcher
// (moby/patternmatcher) and the same .dockerignore reader Docker uses.
//
// Usage: docker-context DIR [COPY_TO]
// Prints the included paths (relative, slash-separated, sorted) one per line; with COPY_TO it
// also copies them there, so a build step can be tried on exactly the context.
package main

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

func main() {
	if len(os.Args) < 2 || len(os.Args) > 3 {
		fmt.Fprintln(os.Stderr, "usage: docker-context DIR [COPY_TO]")
		os.Exit(2)
	}
	root := os.Args[1]
	files, err := contextFiles(root)
	if err != nil {
		fmt.Fprintln(os.Stderr, "docker-context:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println(f)
		if len(os.Args) == 3 {
			if err := copyFile(filepath.Join(root, f), filepath.Join(os.Args[2], f)); err != nil {
				fmt.Fprintln(os.Stderr, "docker-context:", err)
				os.Exit(1)
			}
		}
	}
}

func contextFiles(root string) ([]string, error) {
	var patterns []string
	if f, err := os.Open(filepath.Join(root, ".dockerignore")); err == nil {
		patterns, err = ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("reading .dockerignore: %w", err)
		}
	}
	pm, err := patternmatcher.New(patterns)
	if err != nil {
		return nil, fmt.Errorf("invalid .dockerignore pattern: %w", err)
	}
	var files []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		excluded, err := pm.MatchesOrParentMatches(rel)
		if err != nil {
			return err
		}
		if d.IsDir() {
			// Like Docker: skip an excluded directory unless an exception (!pattern) may
			// re-include something below it.
			if excluded && !pm.Exclusions() {
				return filepath.SkipDir
			}
			return nil
		}
		if !excluded && (d.Type().IsRegular() || d.Type()&fs.ModeSymlink != 0) {
			files = append(files, rel)
		}
		return nil
	})
	sort.Strings(files)
	return files, err
}

func copyFile(from, to string) error {
	if err := os.MkdirAll(filepath.Dir(to), 0o755); err != nil {
		return err
	}
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	info, err := in.Stat()
	if err != nil {
		return err
	}
	out, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, info.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
