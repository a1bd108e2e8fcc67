#include "plugins/elf_symbols.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace xquant {

namespace {

[[noreturn]] void malformed(const std::filesystem::path& file, const std::string& why) {
  throw std::runtime_error("'" + file.string() + "' is not a valid ELF shared object: " + why);
}

// Reads `count` objects of T at `offset`, refusing anything past the end.
template <class T>
std::vector<T> read_array(const std::vector<char>& bytes, uint64_t offset, uint64_t count,
                          const std::filesystem::path& file, const char* what) {
  if (offset > bytes.size() || count > (bytes.size() - offset) / sizeof(T)) malformed(file, std::string(what) + " out of bounds");
  std::vector<T> out(count);
  if (count) std::memcpy(out.data(), bytes.data() + offset, count * sizeof(T));
  return out;
}

template <class Ehdr, class Shdr, class Sym, unsigned char (*Bind)(unsigned char)>
std::vector<std::string> dynamic_symbols(const std::vector<char>& bytes, const std::filesystem::path& file) {
  const auto ehdr = read_array<Ehdr>(bytes, 0, 1, file, "ELF header")[0];
  if (ehdr.e_shentsize != sizeof(Shdr)) malformed(file, "unexpected section header size");
  const auto sections = read_array<Shdr>(bytes, ehdr.e_shoff, ehdr.e_shnum, file, "section header table");
  std::vector<std::string> names;
  for (const Shdr& s : sections) {
    if (s.sh_type != SHT_DYNSYM) continue;
    if (s.sh_link >= sections.size()) malformed(file, ".dynsym links to a missing string table");
    const Shdr& strtab = sections[s.sh_link];
    const auto strings = read_array<char>(bytes, strtab.sh_offset, strtab.sh_size, file, ".dynstr");
    const auto symbols = read_array<Sym>(bytes, s.sh_offset, s.sh_size / sizeof(Sym), file, ".dynsym");
    for (const Sym& sym : symbols) {
      const unsigned char bind = Bind(sym.st_info);
      if (sym.st_shndx == SHN_UNDEF || (bind != STB_GLOBAL && bind != STB_WEAK)) continue;
      if (sym.st_name >= strings.size()) malformed(file, "symbol name outside .dynstr");
      const char* begin = strings.data() + sym.st_name;
      names.emplace_back(begin, strnlen(begin, strings.size() - sym.st_name));
    }
  }
  return names;
}

unsigned char bind64(unsigned char info) { return ELF64_ST_BIND(info); }
unsigned char bind32(unsigned char info) { return ELF32_ST_BIND(info); }

}  // namespace

std::vector<std::string> exported_dynamic_symbols(const std::filesystem::path& file) {
  std::ifstream in(file, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open '" + file.string() + "'");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < EI_NIDENT || std::memcmp(bytes.data(), ELFMAG, SELFMAG) != 0) malformed(file, "no ELF magic");
  if (bytes[EI_DATA] != ELFDATA2LSB) malformed(file, "not little-endian");
  switch (bytes[EI_CLASS]) {
    case ELFCLASS64: return dynamic_symbols<Elf64_Ehdr, Elf64_Shdr, Elf64_Sym, bind64>(bytes, file);
    case ELFCLASS32: return dynamic_symbols<Elf32_Ehdr, Elf32_Shdr, Elf32_Sym, bind32>(bytes, file);
    default: malformed(file, "unknown ELF class");
  }
}

}  // namespace xquant
