// elf_symbols.hpp: the symbols a shared library exports, read from its ELF
// dynamic symbol table (.dynsym) without loading it.
//
// The registry checks for the plugin entry symbol before dlopen, so a library
// that is not a plugin never runs its initialisers in our process. The
// dynamic table is what the dynamic linker itself resolves against, and it
// survives `strip` (Boost.DLL's library_info reads the static .symtab, which
// strip removes, so every plugin of a stripped install looked like a
// non-plugin). Layout: the System V gABI, "Symbol Table" and "Sections"
// (elf.h in glibc).
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace xquant {

// Names of the defined global/weak symbols in `file`'s .dynsym. Throws
// std::runtime_error naming the file when it is not a readable ELF shared
// object (truncated, wrong magic, section table out of bounds).
std::vector<std::string> exported_dynamic_symbols(const std::filesystem::path& file);

}  // namespace xquant
