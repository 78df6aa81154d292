package main

import (
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/compiler/protogen"
)

// commentWidth is the width generated sentences are wrapped to, leaving
// room for "// " in 100 columns, as protoc-gen-connect-go does. Comments
// copied from the .proto file are printed as they are.
const commentWidth = 97

// deprecationNotice is the paragraph added to the docs of deprecated
// services and methods, as protoc-gen-go and protoc-gen-connect-go write it.
const deprecationNotice = "// Deprecated: do not use."

// printDoc prints a doc comment whose paragraphs are, in order and when not
// empty: a generated sentence, wrapped; the comments of the .proto file; the
// deprecation notice.
func printDoc(g *protogen.GeneratedFile, sentence string, comments []protogen.Comments, deprecated bool) {
	first := true
	paragraph := func() {
		if !first {
			g.P("//")
		}
		first = false
	}
	if sentence != "" {
		paragraph()
		printWrapped(g, sentence)
	}
	for _, c := range comments {
		if s := strings.TrimSuffix(c.String(), "\n"); s != "" {
			paragraph()
			g.P(s)
		}
	}
	if deprecated {
		paragraph()
		g.P(deprecationNotice)
	}
}

// printWrapped prints text as // comment lines of at most commentWidth
// characters, breaking between words.
func printWrapped(g *protogen.GeneratedFile, text string) {
	var line strings.Builder
	for _, word := range strings.Fields(text) {
		if line.Len() > 0 && utf8.RuneCountInString(line.String())+1+utf8.RuneCountInString(word) > commentWidth {
			g.P("// ", line.String())
			line.Reset()
		}
		if line.Len() > 0 {
			line.WriteByte(' ')
		}
		line.WriteString(word)
	}
	if line.Len() > 0 {
		g.P("// ", line.String())
	}
}
