// report.cpp: see report.hpp.
#include "decide/report.hpp"

#include "core/error.hpp"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace xquant::decide {

namespace {

using nlohmann::json;

json accuracy_json(const Accuracy& a) {
  return {{"ppl", a.ppl}, {"mean_nll", a.mean_nll}, {"kld", a.kld}, {"positions", a.positions}};
}

std::string escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '&') o += "&amp;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string rung_of(const Decision& d, size_t i) {
  if (d.fallback.ladder.empty()) return fmt::format("int{}", d.bits);
  return d.ladder[static_cast<size_t>(d.fallback.rung_of_group[i])];
}

// Horizontal bars, one row per group: measured KLD and the proxy, each
// scaled to its own maximum (they are on different scales; the ranks are
// what is compared).
std::string sensitivity_svg(const Decision& d) {
  const size_t n = d.groups.size();
  if (d.sensitivity.size() != n || n == 0) return "";
  double max_m = 0, max_p = 0;
  for (const auto& s : d.sensitivity) {
    max_m = std::max(max_m, s.kld.front());
    max_p = std::max(max_p, s.proxy);
  }
  const int row = 22, label = 230, width = 360, h = static_cast<int>(n) * row + 30;
  std::string svg = fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-size='11' "
                                "font-family='sans-serif'>",
                                label + width + 90, h);
  svg += fmt::format("<rect x='{}' y='4' width='10' height='8' fill='#d9534f'/><text x='{}' y='12'>measured KLD "
                     "(only this group quantized)</text><rect x='{}' y='4' width='10' height='8' fill='#5b8def'/>"
                     "<text x='{}' y='12'>proxy (Hessian-weighted error)</text>",
                     label, label + 14, label + 230, label + 244);
  for (size_t i = 0; i < n; ++i) {
    const int y = 22 + static_cast<int>(i) * row;
    const double m = d.sensitivity[i].kld.front(), p = d.sensitivity[i].proxy;
    const int wm = max_m > 0 ? static_cast<int>(width * m / max_m) : 0;
    const int wp = max_p > 0 ? static_cast<int>(width * p / max_p) : 0;
    const bool dense = rung_of(d, i) != fmt::format("int{}", d.bits);
    svg += fmt::format("<text x='0' y='{}'{}>{}</text>", y + 12, dense ? " font-weight='bold'" : "",
                       escape(d.groups[i].name + (dense ? " -> " + rung_of(d, i) : "")));
    svg += fmt::format("<rect x='{}' y='{}' width='{}' height='8' fill='#d9534f'/>", label, y + 2, std::max(wm, 1));
    svg += fmt::format("<rect x='{}' y='{}' width='{}' height='8' fill='#5b8def'/>", label, y + 11, std::max(wp, 1));
    svg += fmt::format("<text x='{}' y='{}'>{:.3g}</text>", label + std::max(wm, 1) + 4, y + 10, m);
  }
  return svg + "</svg>";
}

// Accuracy against weight bytes for every fallback method: the quick
// probes (a subset of the evaluation windows) as a line of dots, the full
// evaluations as squares, the target as a dashed line. x is logarithmic in
// the bytes above the smallest point, so the region where the target is met
// (a few groups moved) is not squeezed against the left edge.
std::string curve_svg(const Decision& d) {
  if (d.fallback_methods.empty()) return "";
  const bool ppl = d.accuracy.metric == "ppl";
  const double scale = ppl ? 100.0 : 1.0;  // ppl: percent above the float model
  auto metric = [&](const FallbackStep& s) { return s.excess * scale; };
  const double target = d.accuracy.max_increase * scale;
  double x0 = 1e300, x1 = 0, y0 = std::min(0.0, target), y1 = target;
  for (const auto& m : d.fallback_methods)
    for (const auto* list : {&m.probes, &m.steps})
      for (const auto& s : *list) {
        x0 = std::min<double>(x0, s.bytes);
        x1 = std::max<double>(x1, s.bytes);
        y0 = std::min(y0, metric(s));
        y1 = std::max(y1, metric(s));
      }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + 1e-9;
  const int W = 640, H = 300, L = 70, B = 44, T = 30, R = 20;
  const double span = std::log1p(x1 - x0);
  auto px = [&](double x) { return L + std::log1p(x - x0) / span * (W - L - R); };
  auto py = [&](double y) { return T + (1 - (y - y0) / (y1 - y0)) * (H - T - B); };
  const char* colors[] = {"#1b7837", "#5b8def", "#d9534f", "#888"};
  std::string svg = fmt::format("<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-size='11' "
                                "font-family='sans-serif'>",
                                W, H);
  svg += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#333'/>", L, H - B, W - R, H - B);
  svg += fmt::format("<line x1='{}' y1='{}' x2='{}' y2='{}' stroke='#333'/>", L, T, L, H - B);
  svg += fmt::format("<line x1='{}' y1='{:.1f}' x2='{}' y2='{:.1f}' stroke='#2a2' stroke-dasharray='4 3'/>"
                     "<text x='{}' y='{:.1f}' fill='#2a2' text-anchor='end'>target {:.4g}</text>",
                     L, py(target), W - R, py(target), W - R, py(target) - 3, target);
  for (size_t k = 0; k < d.fallback_methods.size(); ++k) {
    const auto& m = d.fallback_methods[k];
    const char* c = colors[std::min<size_t>(k, 3)];
    svg += fmt::format("<rect x='{}' y='8' width='10' height='10' fill='{}'/><text x='{}' y='17'>{}</text>",
                       L + 150 * static_cast<int>(k), c, L + 14 + 150 * static_cast<int>(k), escape(m.method));
    std::vector<const FallbackStep*> pts;
    for (const auto& s : m.probes) pts.push_back(&s);
    std::string path;
    for (size_t i = 0; i < pts.size(); ++i) {
      path += fmt::format("{}{:.1f},{:.1f} ", i ? "L" : "M", px(pts[i]->bytes), py(metric(*pts[i])));
      svg += fmt::format("<circle cx='{:.1f}' cy='{:.1f}' r='3' fill='{}'><title>{} probe: {} bytes, ppl {:.5g}, KLD "
                         "{:.5g} (subset)</title></circle>",
                         px(pts[i]->bytes), py(metric(*pts[i])), c, escape(m.method), pts[i]->bytes,
                         pts[i]->accuracy.ppl, pts[i]->accuracy.kld);
    }
    if (!path.empty()) svg += fmt::format("<path d='{}' fill='none' stroke='{}' stroke-opacity='0.6'/>", path, c);
    for (const auto& s : m.steps)
      svg += fmt::format("<rect x='{:.1f}' y='{:.1f}' width='8' height='8' fill='none' stroke='{}' stroke-width='2'>"
                         "<title>{} (all tokens): {} bytes, ppl {:.5g}, KLD {:.5g}{}</title></rect>",
                         px(s.bytes) - 4, py(metric(s)) - 4, c, escape(m.method), s.bytes, s.accuracy.ppl, s.accuracy.kld,
                         s.meets ? ", meets" : "");
  }
  svg += fmt::format("<text x='{}' y='{}'>{:.0f}</text><text x='{}' y='{}' text-anchor='end'>{:.0f}</text>", L,
                     H - B + 14, x0, W - R, H - B + 14, x1);
  svg += fmt::format("<text x='{}' y='{}' text-anchor='middle'>weight bytes of the covered Linears (log scale above "
                     "the smallest)</text>",
                     (L + W - R) / 2, H - 10);
  svg += fmt::format("<text x='{}' y='{:.1f}' text-anchor='end'>{:.4g}</text><text x='{}' y='{:.1f}' "
                     "text-anchor='end'>{:.4g}</text>",
                     L - 4, py(y1) + 4, y1, L - 4, py(y0) + 4, y0);
  svg += fmt::format("<text x='12' y='{}' transform='rotate(-90 12 {})' text-anchor='middle'>{}</text>", (T + H - B) / 2,
                     (T + H - B) / 2, ppl ? "perplexity above float (%)" : "mean KLD (nats)");
  return svg + "</svg>";
}

json step_json(const FallbackStep& s) {
  return {{"moved", s.moved}, {"rung", s.rung}, {"bytes", s.bytes}, {"dense_bytes", s.dense_bytes},
          {"path_index", s.path_index}, {"accuracy", accuracy_json(s.accuracy)}, {"excess", s.excess},
          {"meets", s.meets}};
}

}  // namespace

std::string explain(const Decision& d) {
  std::string s = fmt::format("decision for {} ({}; candidates {})\n", d.model, d.scheme, fmt::join(d.candidates, ", "));
  if (!d.overlap.empty()) s += "held-out: " + d.overlap + "\n";
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const auto& g = d.groups[i];
    s += fmt::format("  {:<28} {:<12} {}", g.name, g.candidates[static_cast<size_t>(g.chosen)].algorithm + " " +
                                                      rung_of(d, i), g.why);
    if (i < d.sensitivity.size())
      s += fmt::format("; measured KLD alone {:.5f}", d.sensitivity[i].kld.front());
    if (!g.activation_why.empty()) s += "; " + g.activation_why;
    s += "\n";
  }
  if (!d.sensitivity.empty()) s += fmt::format("proxy vs measured sensitivity: Spearman rho {:.3f}\n", d.spearman_rho);
  if (!std::isnan(d.scaled_rho))
    s += fmt::format("int8 rung: scaled estimate vs measured sensitivity: Spearman rho {:.3f}\n", d.scaled_rho);
  if (d.evaluator)
    s += fmt::format("float model: ppl {:.4f} on {} tokens\n", d.reference.ppl, d.eval_tokens);
  for (const auto& v : d.variants)
    s += fmt::format("  {:<14} {:<9} {:>9} bytes  ppl {:.4f}  KLD {:.5f}\n", v.name, v.source, v.bytes, v.accuracy.ppl,
                     v.accuracy.kld);
  for (const auto& r : d.rules_written) s += "rule: " + r + "\n";
  for (const auto& n : d.notes) s += "note: " + n + "\n";
  return s;
}

std::string report_json(const Decision& d) {
  json j;
  j["model"] = d.model;
  j["scheme"] = d.scheme;
  j["candidates"] = d.candidates;
  j["calibration_text"] = d.calibration_text;
  j["evaluation_text"] = d.evaluation_text;
  j["held_out"] = d.overlap;
  if (d.accuracy.enabled)
    j["accuracy"] = {{"metric", d.accuracy.metric}, {"max_increase", d.accuracy.max_increase},
                     {"fallback", d.accuracy.fallback}, {"max_tokens", d.accuracy.max_tokens},
                     {"max_bytes", d.accuracy.max_bytes}, {"compare_baseline", d.accuracy.compare_baseline},
                     {"eval_tokens", d.eval_tokens}, {"target", d.fallback.target}, {"met", d.fallback.met},
                     {"missed", d.fallback.missed}, {"float", accuracy_json(d.reference)}};
  json groups = json::array();
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const auto& g = d.groups[i];
    json cands = json::array();
    for (const auto& c : g.candidates)
      cands.push_back({{"algorithm", c.algorithm}, {"ok", c.ok}, {"error", c.error}, {"output_error", c.output_error},
                       {"rel_output_error", c.rel_output_error}, {"bytes", c.bytes}, {"seconds", c.seconds}});
    json gj = {{"name", g.name}, {"modules", g.modules}, {"params", g.params}, {"dense_bytes", g.dense_bytes},
               {"activations", {{"excess_kurtosis", g.activations.excess_kurtosis},
                                {"max_over_median_absmax", g.activations.max_over_median_absmax},
                                {"frac_over_6", g.activations.frac_over_6}}},
               {"candidates", cands}, {"chosen", g.candidates[static_cast<size_t>(g.chosen)].algorithm},
               {"why", g.why}, {"rung", rung_of(d, i)}, {"activation_decision", g.activation_why}};
    if (g.int8.ok) gj["int8"] = {{"output_error", g.int8.output_error}, {"bytes", g.int8.bytes}};
    if (g.kld_static >= 0)
      gj["activation_kld_alone"] = {{"static_tensor", g.kld_static}, {"dynamic_token", g.kld_dynamic},
                                    {"dynamic", g.dynamic_activations}};
    if (i < d.sensitivity.size())
      gj["sensitivity"] = {{"kld_per_rung", d.sensitivity[i].kld},
                           {"measured_per_rung", d.sensitivity[i].measured},
                           {"scaled_kld_per_rung", d.sensitivity[i].scaled},
                           {"proxy", d.sensitivity[i].proxy}};
    groups.push_back(gj);
  }
  j["groups"] = groups;
  j["spearman_rho_proxy_vs_measured"] = d.spearman_rho;
  if (!std::isnan(d.scaled_rho)) j["spearman_rho_scaled_int8_vs_measured"] = d.scaled_rho;
  j["fallback_evaluations_reused"] = d.evaluations_reused;
  j["layer_tokens_evaluated"] = d.layer_tokens_evaluated;
  j["ladder"] = d.ladder;
  json steps = json::array();
  for (const auto& s : d.fallback.steps) steps.push_back(step_json(s));
  j["fallback_steps"] = steps;
  j["fallback_method"] = d.fallback.method;
  json methods = json::array();
  for (const auto& m : d.fallback_methods) {
    json probes = json::array(), full = json::array();
    for (const auto& s : m.probes) probes.push_back(step_json(s));
    for (const auto& s : m.steps) full.push_back(step_json(s));
    const FallbackStep& final_step = m.settled.empty() ? m.steps.back() : m.final_on_subset;
    methods.push_back({{"method", m.method}, {"met", m.met}, {"path_length", m.path_length}, {"final", step_json(final_step)},
                       {"settled", m.settled}, {"probes_subset", probes}, {"evaluated_all_tokens", full}});
  }
  j["fallback_methods"] = methods;
  json variants = json::array();
  for (const auto& v : d.variants)
    variants.push_back({{"name", v.name}, {"source", v.source}, {"bytes", v.bytes}, {"accuracy", accuracy_json(v.accuracy)}});
  j["variants"] = variants;
  j["rules_written"] = d.rules_written;
  j["dense_groups"] = d.dense_groups;
  j["output"] = d.written ? d.output.string() : "";
  j["seconds"] = {{"profile", d.seconds.profile}, {"evaluate", d.seconds.evaluate}, {"sensitivity", d.seconds.sensitivity},
                  {"fallback", d.seconds.fallback}, {"write", d.seconds.write}, {"total", d.seconds.total},
                  {"gptq_algorithm", d.seconds.gptq_algorithm}};
  j["notes"] = d.notes;
  return j.dump(2);
}

std::string report_html(const Decision& d) {
  std::string h = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>xquant decision report</title><style>"
                  "body{font-family:sans-serif;margin:24px;color:#222;max-width:1100px}"
                  "table{border-collapse:collapse;font-size:12px;margin:8px 0}"
                  "td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}th{background:#f3f3f3}"
                  "td.n{text-align:right;font-variant-numeric:tabular-nums}.miss{color:#b00}.ok{color:#070}"
                  "</style></head><body>";
  h += fmt::format("<h1>Decision report</h1><p><b>model</b> {} &nbsp; <b>request</b> {} &nbsp; <b>candidates</b> {}</p>",
                   escape(d.model), escape(d.scheme), escape(fmt::format("{}", fmt::join(d.candidates, ", "))));
  h += fmt::format("<p><b>calibration</b> {}<br><b>evaluation</b> {}<br>{}</p>", escape(d.calibration_text),
                   escape(d.evaluation_text.empty() ? "(no accuracy section)" : d.evaluation_text), escape(d.overlap));
  if (d.accuracy.enabled)
    h += fmt::format("<p><b>target</b> {} &le; {:.5g} (float {:.5g}; max_increase {:g}) on {} tokens{}: <span "
                     "class='{}'>{}</span></p>",
                     d.accuracy.metric, d.fallback.target,
                     d.accuracy.metric == "ppl" ? d.reference.ppl : d.reference.kld, d.accuracy.max_increase,
                     d.eval_tokens,
                     d.accuracy.max_bytes ? fmt::format(", within max_bytes {}", d.accuracy.max_bytes) : std::string(),
                     d.fallback.met ? "ok" : "miss", d.fallback.met ? "met" : escape(d.fallback.missed));
  h += "<h2>Variants</h2><table><tr><th>variant</th><th>how measured</th><th>positions scored</th><th>bytes</th>"
       "<th>ppl</th><th>mean KLD</th></tr>";
  if (d.evaluator)
    h += fmt::format("<tr><td>float</td><td>reference</td><td class='n'>{}</td><td></td><td class='n'>{:.4f}</td><td "
                     "class='n'>0</td></tr>",
                     d.reference.positions, d.reference.ppl);
  for (const auto& v : d.variants)
    h += fmt::format("<tr><td>{}</td><td>{}</td><td class='n'>{}</td><td class='n'>{}</td><td class='n'>{:.4f}</td><td "
                     "class='n'>{:.5f}</td></tr>",
                     escape(v.name), v.source, v.accuracy.positions, v.bytes, v.accuracy.ppl, v.accuracy.kld);
  h += "</table><p style='font-size:12px'>simulated: each group's dequantized weights swapped into the float model "
       "(every group calibrated on float inputs), bytes = the covered Linears' codes + scales; written: the checkpoint "
       "reloaded by the engine, bytes = its .safetensors files (embeddings and norms included).</p>";
  if (!d.sensitivity.empty()) {
    h += fmt::format("<h2>Layer-wise sensitivity</h2><p>Spearman &rho; of proxy vs measured: <b>{:.3f}</b> over {} "
                     "groups (bold: moved up the ladder)</p>",
                     d.spearman_rho, d.groups.size());
    h += sensitivity_svg(d);
  }
  if (!d.fallback_methods.empty()) {
    h += "<h2>Fallback: accuracy vs bytes</h2><p style='font-size:12px'>Each method climbs its own allocation path "
         "(knapsack: least summed measured damage for a byte budget; greedy: most damage removed per extra byte; "
         "weight-error: the plain baseline, largest relative weight error first, straight to the top of the ladder). "
         "Dots: probes on a subset of the evaluation windows; squares: evaluated on all of them. y: the target's "
         "metric against the float model on the same tokens.</p>" +
         curve_svg(d);
    h += "<table><tr><th>method</th><th>path length</th><th>evaluations (subset + all)</th><th>bytes</th><th>of "
         "which dense</th><th>ppl</th><th>KLD</th><th>meets</th><th>groups moved</th></tr>";
    for (const auto& m : d.fallback_methods) {
      const auto& s = m.settled.empty() ? m.steps.back() : m.final_on_subset;
      h += fmt::format("<tr><td>{}{}</td><td class='n'>{}</td><td class='n'>{} + {}</td><td class='n'>{}</td><td "
                       "class='n'>{}</td><td class='n'>{:.4f}</td><td class='n'>{:.5f}</td><td class='{}'>{}</td><td>{}</td></tr>",
                       escape(m.method), m.method == d.fallback.method ? " (written)" : "", m.path_length,
                       m.probes.size(), m.steps.size(), s.bytes, s.dense_bytes, s.accuracy.ppl, s.accuracy.kld,
                       m.met ? "ok" : "miss", m.met ? "yes" : m.settled.empty() ? "no" : "not confirmed",
                       escape((s.moved.empty() ? "(none)" : s.moved) + (m.settled.empty() ? "" : "; " + m.settled)));
    }
    h += "</table>";
  }
  h += "<h2>Choice per group</h2><table><tr><th>group</th><th>chosen</th><th>final</th>";
  for (const auto& c : d.candidates) h += "<th>" + escape(c) + " err</th>";
  h += "<th>kurtosis</th><th>max/med absmax</th><th>|x|&gt;6</th><th>why</th></tr>";
  for (size_t i = 0; i < d.groups.size(); ++i) {
    const auto& g = d.groups[i];
    h += fmt::format("<tr><td>{}</td><td>{}</td><td>{}</td>", escape(g.name),
                     escape(g.candidates[static_cast<size_t>(g.chosen)].algorithm), escape(rung_of(d, i)));
    for (const auto& c : g.candidates)
      h += c.ok ? fmt::format("<td class='n'>{:.4g}</td>", c.output_error) : "<td>failed</td>";
    h += fmt::format("<td class='n'>{:.2f}</td><td class='n'>{:.2f}</td><td class='n'>{:.2g}</td><td>{}</td></tr>",
                     g.activations.excess_kurtosis, g.activations.max_over_median_absmax, g.activations.frac_over_6,
                     escape(g.why + (g.activation_why.empty() ? "" : "; " + g.activation_why)));
  }
  h += "</table>";
  if (!d.rules_written.empty()) {
    h += "<h2>Checkpoint</h2><ul>";
    for (const auto& r : d.rules_written) h += "<li>" + escape(r) + "</li>";
    if (!d.dense_groups.empty()) h += "<li>dense: " + escape(fmt::format("{}", fmt::join(d.dense_groups, ", "))) + "</li>";
    h += "</ul>";
    if (d.written) h += "<p>written to " + escape(d.output.string()) + "</p>";
  }
  h += fmt::format("<h2>Time</h2><p>profile {:.2f} s (gptq inside it {:.2f} s), evaluate {:.2f} s, sensitivity {:.2f} s, "
                   "fallback {:.2f} s, write {:.2f} s, total {:.2f} s</p>",
                   d.seconds.profile, d.seconds.gptq_algorithm, d.seconds.evaluate, d.seconds.sensitivity,
                   d.seconds.fallback, d.seconds.write, d.seconds.total);
  for (const auto& n : d.notes) h += "<p class='miss'>" + escape(n) + "</p>";
  return h + "</body></html>\n";
}

void write_report(const Decision& d, const std::filesystem::path& html_path) {
  if (html_path.empty()) return;
  std::error_code ec;
  if (html_path.has_parent_path()) std::filesystem::create_directories(html_path.parent_path(), ec);
  auto write = [](const std::filesystem::path& p, const std::string& text) {
    const auto tmp = p.string() + ".tmp";
    {
      std::ofstream out(tmp, std::ios::binary);
      if (!(out << text)) fail(XQ_ERR_IO, "cannot write report '{}'", p.string());
    }
    std::filesystem::rename(tmp, p);
  };
  write(html_path, report_html(d));
  auto json_path = html_path;
  json_path.replace_extension(".json");
  write(json_path, report_json(d));
}

}  // namespace xquant::decide
