package rootfs

import (
	"strings"

	"golang.org/x/sys/unix"
)

// MountOpts is an OCI mount's option list split the way mount(2) wants it.
type MountOpts struct {
	Flags       uintptr   // MS_* flags for the mount itself
	Propagation []uintptr // MS_SHARED etc., applied one by one afterwards
	Data        string    // filesystem-specific options
	Recursive   bool      // rbind
	Bind        bool
}

var flagOptions = map[string]struct {
	clear bool
	flag  uintptr
}{
	"async":         {true, unix.MS_SYNCHRONOUS},
	"atime":         {true, unix.MS_NOATIME},
	"bind":          {false, unix.MS_BIND},
	"defaults":      {false, 0},
	"dev":           {true, unix.MS_NODEV},
	"diratime":      {true, unix.MS_NODIRATIME},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"exec":          {true, unix.MS_NOEXEC},
	"iversion":      {false, unix.MS_I_VERSION},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"loud":          {true, unix.MS_SILENT},
	"mand":          {false, unix.MS_MANDLOCK},
	"noatime":       {false, unix.MS_NOATIME},
	"nodev":         {false, unix.MS_NODEV},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"noexec":        {false, unix.MS_NOEXEC},
	"noiversion":    {true, unix.MS_I_VERSION},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nomand":        {true, unix.MS_MANDLOCK},
	"norelatime":    {true, unix.MS_RELATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"nosuid":        {false, unix.MS_NOSUID},
	"rbind":         {false, unix.MS_BIND | unix.MS_REC},
	"relatime":      {false, unix.MS_RELATIME},
	"remount":       {false, unix.MS_REMOUNT},
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"silent":        {false, unix.MS_SILENT},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"suid":          {true, unix.MS_NOSUID},
	"sync":          {false, unix.MS_SYNCHRONOUS},
}

var propagationOptions = map[string]uintptr{
	"private":     unix.MS_PRIVATE,
	"rprivate":    unix.MS_PRIVATE | unix.MS_REC,
	"shared":      unix.MS_SHARED,
	"rshared":     unix.MS_SHARED | unix.MS_REC,
	"slave":       unix.MS_SLAVE,
	"rslave":      unix.MS_SLAVE | unix.MS_REC,
	"unbindable":  unix.MS_UNBINDABLE,
	"runbindable": unix.MS_UNBINDABLE | unix.MS_REC,
}

// ParsePropagation maps an OCI rootfsPropagation value to mount flags.
func ParsePropagation(s string) (uintptr, bool) {
	f, ok := propagationOptions[s]
	return f, ok
}

// ParseOptions splits OCI mount options. Options that are neither flags nor
// propagation go to the filesystem as data, as mount(8) does; options only
// runtimes understand (tmpcopyup, idmap…) are dropped.
func ParseOptions(options []string) MountOpts {
	var o MountOpts
	var data []string
	for _, opt := range options {
		if f, ok := flagOptions[opt]; ok {
			if f.clear {
				o.Flags &^= f.flag
			} else {
				o.Flags |= f.flag
			}
			continue
		}
		if p, ok := propagationOptions[opt]; ok {
			o.Propagation = append(o.Propagation, p)
			continue
		}
		switch opt {
		case "tmpcopyup", "idmap", "ridmap", "copy-symlink", "nocopyup":
			continue
		}
		data = append(data, opt)
	}
	o.Bind = o.Flags&unix.MS_BIND != 0
	o.Recursive = o.Bind && o.Flags&unix.MS_REC != 0
	o.Data = strings.Join(data, ",")
	return o
}
