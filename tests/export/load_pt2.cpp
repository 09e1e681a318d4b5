// Smoke test: load a res2net .pt2 package from C++ and run it on a batch read from a raw float file.
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/torch.h>
#include <fstream>
#include <iostream>
int main(int argc, char** argv) {
  if (argc != 6) { std::cerr << "usage: load_pt2 model.pt2 input.f32 N S output.f32\n"; return 2; }
  const int64_t n = std::stoll(argv[3]), s = std::stoll(argv[4]);
  std::vector<float> buf(n * 3 * s * s);
  std::ifstream(argv[2], std::ios::binary).read(reinterpret_cast<char*>(buf.data()), buf.size() * sizeof(float));
  torch::NoGradGuard no_grad;
  torch::inductor::AOTIModelPackageLoader loader(argv[1]);
  auto meta = loader.get_metadata();
  std::cout << "model_name=" << meta["model_name"] << " output_name=" << meta["output_name"] << "\n";
  auto x = torch::from_blob(buf.data(), {n, 3, s, s}, torch::kFloat32).clone();
  auto out = loader.run({x})[0].contiguous();
  std::cout << "output=" << out.size(0) << "x" << out.size(1) << "\n";
  std::ofstream(argv[5], std::ios::binary).write(reinterpret_cast<const char*>(out.data_ptr<float>()), out.numel() * sizeof(float));
  return 0;
}
