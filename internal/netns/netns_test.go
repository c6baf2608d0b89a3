package netns

import (
	"os"
	"testing"

	"github.com/vishvananda/netlink"
)

func TestCreateDoClose(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	ns, err := Create(UniqueName("hnt-ns-"))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	err = ns.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			t.Errorf("new namespace links = %v, want only lo", links)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/run/netns/" + ns.Name); !os.IsNotExist(err) {
		t.Errorf("namespace file still present after Close: %v", err)
	}
}
