package main

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	flotillav1 "github.com/flotilla-vm/flotilla/proto/flotilla/v1"
)

// imageCommands are the subcommands of "image".
func imageCommands(c *cli) []*cobra.Command {
	return []*cobra.Command{
		leaf(c, "list", "List the image catalogue", 0, defineNone, runImageList),
		leaf(c, "get NAME", "Show an image and the hosts that hold it", 1, defineNone, runImageGet),
		leaf(c, "import NAME", "Import an image on a host: from a file in its image directory (--path) or from another host (--from-host)", 1,
			defineImageImport, runImageImport),
		leaf(c, "delete NAME", "Delete an image no instance uses, from the catalogue and every host", 1, defineNone, runImageDelete),
	}
}

// parseImageImport builds an ImportImage request; the server validates
// the values (INVALID_ARGUMENT), flotctl only their form.
func parseImageImport(name string, args []string) (*flotillav1.ImportImageRequest, error) {
	return parseWith(name, args, 1, defineImageImport)
}

func defineImageImport(fs *pflag.FlagSet, name string) func([]string) (*flotillav1.ImportImageRequest, error) {
	host := fs.String("host", "", "the host that is to hold the image (required)")
	path := fs.String("path", "", "a disk file (qcow2 or raw) or an image directory inside the host's image directory, relative to it")
	from := fs.String("from-host", "", "a host that holds the image, to copy it from")
	return func(pos []string) (*flotillav1.ImportImageRequest, error) {
		switch {
		case *host == "":
			return nil, &usageError{name, "--host is required"}
		case (*path == "") == (*from == ""):
			return nil, &usageError{name, "give exactly one of --path and --from-host"}
		}
		return &flotillav1.ImportImageRequest{Name: pos[0], HostId: *host, Path: *path, FromHostId: *from}, nil
	}
}

func runImageImport(ctx context.Context, c *cli, req *flotillav1.ImportImageRequest) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	im, err := c.images.ImportImage(cctx, req)
	if err != nil {
		return err
	}
	return printImages(c.stdout, c.out, []*flotillav1.Image{im})
}

func runImageList(ctx context.Context, c *cli, _ []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	resp, err := c.images.ListImages(cctx, &flotillav1.ListImagesRequest{})
	if err != nil {
		return err
	}
	return printImages(c.stdout, c.out.asList(), resp.GetImages())
}

func runImageGet(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	im, err := c.images.GetImage(cctx, &flotillav1.GetImageRequest{Name: pos[0]})
	if err != nil {
		return err
	}
	return printImages(c.stdout, c.out, []*flotillav1.Image{im})
}

func runImageDelete(ctx context.Context, c *cli, pos []string) error {
	cctx, done, err := c.open(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, err := c.images.DeleteImage(cctx, &flotillav1.DeleteImageRequest{Name: pos[0]}); err != nil {
		return err
	}
	if c.out.document() {
		return writeJSONDoc(c.stdout, c.out, []byte(fmt.Sprintf(`{"deleted":%q}`, pos[0])))
	}
	_, err = fmt.Fprintf(c.stdout, "deleting image %s from its hosts\n", escape(pos[0]))
	return err
}

func printImages(w io.Writer, f outFmt, ims []*flotillav1.Image) error {
	if f.document() {
		return writeDoc(w, f, ims)
	}
	rows := make([][]string, 0, len(ims))
	for _, im := range ims {
		sum := im.GetSha256()
		if len(sum) > 12 {
			sum = sum[:12]
		}
		hosts := strings.Join(im.GetHosts(), ",")
		var importing []string
		for _, x := range im.GetImports() {
			importing = append(importing, x.GetHostId())
		}
		if len(importing) > 0 {
			hosts += " (importing: " + strings.Join(importing, ",") + ")"
		}
		fault := "-"
		if im.GetFault() != nil {
			fault = im.GetFault().GetCode()
		}
		rows = append(rows, []string{
			escape(im.GetName()),
			strings.ToLower(enumName(im.GetStatus(), "IMAGE_STATUS_")),
			or(im.GetFormat(), "-"),
			fmt.Sprintf("%d", im.GetVirtualSize()),
			fmt.Sprintf("%d", im.GetAllocatedSize()),
			or(sum, "-"),
			or(strings.TrimSpace(hosts), "-"),
			fault,
		})
	}
	return writeTable(w, []string{"NAME", "STATUS", "FORMAT", "VIRTUAL", "ALLOCATED", "SHA256", "HOSTS", "FAULT"}, rows)
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
