//go:build ignore

// gen_bf16 writes bf16_amd64.s, the BF16 GEMM micro-kernels. Go's
// assembler has no AVX512-BF16 mnemonics (design §4.2), so each VDPBF16PS
// is emitted as bytes, assembled here by GNU as and read back with objdump;
// the AT&T form of every instruction is kept in a comment.
//
//	go run gen_bf16.go   (needs binutils)
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// rows are the 12 A-row operands: Go form and AT&T form.
var rows = [12][2]string{
	{"(R9)", "(%r9)"}, {"(R9)(R8*1)", "(%r9,%r8,1)"}, {"(R9)(R8*2)", "(%r9,%r8,2)"},
	{"(R10)", "(%r10)"}, {"(R10)(R8*1)", "(%r10,%r8,1)"}, {"(R10)(R8*2)", "(%r10,%r8,2)"},
	{"(R11)", "(%r11)"}, {"(R11)(R8*1)", "(%r11,%r8,1)"}, {"(R11)(R8*2)", "(%r11,%r8,2)"},
	{"(R12)", "(%r12)"}, {"(R12)(R8*1)", "(%r12,%r8,1)"}, {"(R12)(R8*2)", "(%r12,%r8,2)"},
}

// encode assembles AT&T instructions and returns their bytes.
func encode(insts []string) [][]byte {
	dir, err := os.MkdirTemp("", "genbf16")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "t.s")
	obj := filepath.Join(dir, "t.o")
	if err := os.WriteFile(src, []byte(strings.Join(insts, "\n")+"\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	if out, err := exec.Command("as", "--64", "-o", obj, src).CombinedOutput(); err != nil {
		log.Fatalf("as: %v\n%s", err, out)
	}
	out, err := exec.Command("objdump", "-d", "--insn-width=16", obj).Output()
	if err != nil {
		log.Fatal(err)
	}
	var res [][]byte
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) < 3 || !strings.HasSuffix(strings.TrimSpace(f[0]), ":") {
			continue
		}
		var b []byte
		for _, h := range strings.Fields(f[1]) {
			var v byte
			fmt.Sscanf(h, "%02x", &v)
			b = append(b, v)
		}
		res = append(res, b)
	}
	if len(res) != len(insts) {
		log.Fatalf("objdump gave %d instructions, want %d", len(res), len(insts))
	}
	return res
}

func byteLine(b []byte) string {
	var s []string
	for _, v := range b {
		s = append(s, fmt.Sprintf("BYTE $0x%02X", v))
	}
	return "\t" + strings.Join(s, "; ")
}

func kernel(w *bytes.Buffer, name string, two bool, nrows int) {
	kernelW(w, name, map[bool]int{true: 32, false: 16}[two], nrows)
}

// kernelW writes a kernel of nrows rows and width 16, 24 or 32 columns.
func kernelW(w *bytes.Buffer, name string, width, nrows int) {
	two := width == 32
	var insts, comments []string
	for r, row := range rows[:nrows] {
		if width == 24 {
			insts = append(insts, fmt.Sprintf("vdpbf16ps %s{1to16}, %%zmm24, %%zmm%d", row[1], r),
				fmt.Sprintf("vdpbf16ps %s{1to8}, %%ymm25, %%ymm%d", row[1], 12+r))
		} else if two {
			for h := range 2 {
				insts = append(insts, fmt.Sprintf("vdpbf16ps %s{1to16}, %%zmm%d, %%zmm%d", row[1], 24+h, 2*r+h))
			}
		} else {
			insts = append(insts, fmt.Sprintf("vdpbf16ps %s{1to16}, %%zmm24, %%zmm%d", row[1], r))
		}
	}
	comments = insts
	enc := encode(insts)
	acc := nrows
	step := 64
	lbl := fmt.Sprint(nrows, "x16")
	if two {
		acc, step, lbl = 2*nrows, 128, fmt.Sprint(nrows, "x32")
	}
	if width == 24 {
		acc, step, lbl = nrows, 96, fmt.Sprint(nrows, "x24")
	}
	if nrows < 12 {
		fmt.Fprintf(w, "// The %d-row variant, for the last rows of a matrix.\n", nrows)
	}
	fmt.Fprintf(w, "// func %s(kc int, a *uint16, lda int, b *uint16, c *float32, ldc, strips int, bias *float32, flags, mask int)\n", name)
	fmt.Fprintf(w, "TEXT ·%s(SB), NOSPLIT, $0-80\n\tSETUP\n\tSHRQ $1, R8 // lda counts uint16\n\n", name)
	fmt.Fprintf(w, "bstrip%s:\n", lbl)
	w.WriteString("\tLEAQ (R9)(R8*2), R10\n\tADDQ R8, R10\n\tLEAQ (R10)(R8*2), R11\n\tADDQ R8, R11\n\tLEAQ (R11)(R8*2), R12\n\tADDQ R8, R12\n")
	w.WriteString("\tMOVQ R9, R14\n\tMOVQ BX, R15\n\tMOVQ CX, AX\n")
	for i := range acc {
		fmt.Fprintf(w, "\tVPXORD Z%d, Z%d, Z%d\n", i, i, i)
	}
	if width == 24 {
		for i := 12; i < 12+nrows; i++ {
			fmt.Fprintf(w, "\tVPXORD Y%d, Y%d, Y%d\n", i, i, i)
		}
	}
	fmt.Fprintf(w, "\nbk%s:\n\tVMOVDQU32 (R15), Z24\n", lbl)
	if two {
		w.WriteString("\tVMOVDQU32 64(R15), Z25\n")
	}
	if width == 24 {
		w.WriteString("\tVMOVDQU32 64(R15), Y25\n")
	}
	for i, b := range enc {
		fmt.Fprintf(w, "\t// %s\n%s\n", comments[i], byteLine(b))
	}
	if step > 64 {
		w.WriteString("\tPREFETCH_B2\n")
	} else {
		w.WriteString("\tPREFETCH_B1\n")
	}
	fmt.Fprintf(w, "\tADDQ $4, R9\n\tADDQ $4, R10\n\tADDQ $4, R11\n\tADDQ $4, R12\n\tADDQ $%d, R15\n\tDECQ AX\n\tJNZ  bk%s\n\n", step, lbl)
	fmt.Fprintf(w, "\tTESTQ $FLAG_LOAD, R13\n\tJNZ   bacc%s\n", lbl)
	for r := range nrows {
		if width == 24 {
			fmt.Fprintf(w, "\tST3_NEW(Z%d, Y%d)\n", r, 12+r)
		} else if two {
			fmt.Fprintf(w, "\tST2_NEW(Z%d, Z%d)\n", 2*r, 2*r+1)
		} else {
			fmt.Fprintf(w, "\tST1_NEW(Z%d)\n", r)
		}
	}
	fmt.Fprintf(w, "\tJMP bnext%s\n\nbacc%s:\n", lbl, lbl)
	for r := range nrows {
		if width == 24 {
			fmt.Fprintf(w, "\tST3_ACC(Z%d, Y%d)\n", r, 12+r)
		} else if two {
			fmt.Fprintf(w, "\tST2_ACC(Z%d, Z%d)\n", 2*r, 2*r+1)
		} else {
			fmt.Fprintf(w, "\tST1_ACC(Z%d)\n", r)
		}
	}
	next := "\tLEAQ (R14)(R8*4), R9\n\tLEAQ (R9)(R8*8), R9\n"
	if nrows < 12 {
		next = fmt.Sprintf("\tLEAQ (R14)(R8*%d), R9\n", nrows)
	}
	fmt.Fprintf(w, "\nbnext%s:\n%s\tDECQ DI\n\tJNZ  bstrip%s\n\tVZEROUPPER\n\tRET\n\n", lbl, next, lbl)
}

func main() {
	var w bytes.Buffer
	w.WriteString(`// Code generated by gen_bf16.go; DO NOT EDIT.

//go:build amd64 && !noasm

#include "textflag.h"
#include "gemm_amd64.h"

// BF16 GEMM micro-kernels: as the FP32 kernels of kernel_amd64.s, but A
// (row-major, lda uint16 per row) and the B panel hold BF16 values in
// k-pairs, and kc counts pairs. Each step loads the panel's pairs for 32
// (or 16) columns and issues VDPBF16PS with the pair A[i][2k], A[i][2k+1]
// broadcast from memory: acc[j] += A[i][2k]·B[2k][j] + A[i][2k+1]·B[2k+1][j]
// with FP32 accumulation.

`)
	kernel(&w, "gemmBF16x32", true, 12)
	kernel(&w, "gemmBF16x16", false, 12)
	kernelW(&w, "gemmBF16x24", 24, 12)
	kernel(&w, "gemmBF16x32r8", true, 8)
	kernel(&w, "gemmBF16x32r4", true, 4)
	if err := os.WriteFile("bf16_amd64.s", w.Bytes(), 0o644); err != nil {
		log.Fatal(err)
	}
}
